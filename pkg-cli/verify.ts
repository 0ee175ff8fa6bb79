// `berth verify IMAGE --key/--cert`: finds IMAGE's signatures in every format the trust material can check and
// verifies them offline. Exit 0 when one verifies, 7 (verification failed) otherwise.
import { signatureStore } from '../client/signatures.js';
import { verifyImage, type SignatureCheck } from '../signing/index.js';
import { CLIError, defineCommand, EXIT, flag, UsageError } from './command.js';
import { makeClient, printJson } from './_client.js';
import { ref, REMOTE } from './flags.js';
import { certificateFile, FORMAT_HELP, formatFlag, formats, publicKeyFile, resolveSubject } from './_signing.js';

export default defineCommand({
  usage: 'IMAGE (--key FILE | --cert FILE)… [--format F]… [--json]',
  description: `Verifies IMAGE's signatures: cosign simple signing and cosign bundles against --key (public keys, PEM), notation
signatures against --cert (trusted certificates: a root CA, or a self-signed signing certificate). Succeeds when
at least one signature verifies; otherwise exits 7 and names what was wrong with each signature found.`,
  flags: {
    key: flag.list({ arg: 'FILE', complete: 'file', help: 'a trusted public key (PEM)' }),
    cert: flag.list({ arg: 'FILE', complete: 'file', help: 'trusted certificates for notation (PEM)' }),
    format: formatFlag,
    ...REMOTE,
  },
  args: ['IMAGE'],
  notes: `${FORMAT_HELP} Default: every format the given --key/--cert can verify.
--json prints {reference, digest, verified, signatures:[{format, manifest, verified, signer, error…}]} in both cases.`,
  examples: [
    'berth verify localhost:5000/app:v1 --key cosign.pub',
    'berth verify localhost:5000/app:v1 --cert ci.crt --format notation --json',
  ],
  async run({ flags, args: [input] }) {
    if (!flags.key.length && !flags.cert.length)
      throw new UsageError('give --key FILE (cosign formats) and/or --cert FILE (notation): what to trust');
    const keys = flags.key.map(publicKeyFile);
    const certificates = flags.cert.flatMap(certificateFile);
    const only = flags.format.length ? formats(flags.format) : undefined;
    if (only?.includes('notation') && !certificates.length)
      throw new UsageError('--format notation needs --cert FILE (the trusted certificate)');
    if (only?.some((f) => f !== 'notation') && !keys.length)
      throw new UsageError('--format cosign/cosign-bundle needs --key FILE (the trusted public key)');
    const r = ref(input, 'IMAGE', 'verify');
    const repo = makeClient(flags).repository(r);
    const subject = await resolveSubject(repo, r);
    const result = await verifyImage(signatureStore(repo), subject.digest, { keys, certificates, formats: only });
    const name = `${r.registry}/${r.repository}@${subject.digest}`;
    if (flags.json) {
      printJson({ reference: input, ...result });
      return result.verified ? EXIT.ok : EXIT.verification;
    }
    for (const s of result.signatures) console.error(_line(s));
    if (!result.verified) {
      const what = result.signatures.length
        ? `none of its ${result.signatures.length} signature(s) verified (see above)`
        : `it has no ${_looked(only, keys.length > 0, certificates.length > 0)} signature`;
      throw new CLIError(`verification failed for ${name}: ${what}`, EXIT.verification);
    }
    console.log(`verified ${name}`);
  },
});

function _line(s: SignatureCheck): string {
  const who = s.signer ? ` by ${s.signer}` : '';
  return s.verified ? `  ok    ${s.format} ${s.manifest}${who}` : `  FAIL  ${s.format} ${s.manifest}${who}: ${s.error}`;
}

function _looked(only: string[] | undefined, keys: boolean, certs: boolean): string {
  const list = only ?? [...(keys ? ['cosign', 'cosign-bundle'] : []), ...(certs ? ['notation'] : [])];
  return list.join(' or ');
}

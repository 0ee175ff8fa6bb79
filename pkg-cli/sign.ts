// `berth sign IMAGE --key KEY`: signs the manifest IMAGE names and stores the signature beside it, in the formats
// cosign and notation read (signing/).
import { createPublicKey } from 'node:crypto';
import { signatureStore } from '../client/signatures.js';
import { signImage, type SignResult } from '../signing/index.js';
import { defineCommand, flag, UsageError } from './command.js';
import { makeClient, printJson } from './_client.js';
import { ref, REMOTE } from './flags.js';
import {
  certificateFile,
  cliSigning,
  FORMAT_HELP,
  formatFlag,
  formats,
  privateKeyFile,
  repositoryName,
  resolveSubject,
} from './_signing.js';

export default defineCommand({
  usage: 'IMAGE --key FILE [--format cosign|cosign-bundle|notation]… [--cert FILE] [--json]',
  description: `Signs the manifest IMAGE names (a tag is resolved to its digest first; an index is signed as a whole) and
stores the signature in IMAGE's repository. The key is a PEM private key: cosign's encrypted format (password in
COSIGN_PASSWORD) or PKCS#8 — see \`berth key generate\`. Offline, key-based: nothing goes to a transparency log.`,
  flags: {
    key: flag.string({ arg: 'FILE', complete: 'file', help: 'the private key (PEM)' }),
    format: formatFlag,
    cert: flag.string({
      arg: 'FILE',
      complete: 'file',
      help: 'notation: the signing certificate (PEM), then any intermediates',
    }),
    ...REMOTE,
  },
  args: ['IMAGE'],
  notes: `${FORMAT_HELP} Default: cosign.`,
  examples: [
    'COSIGN_PASSWORD=… berth sign localhost:5000/app:v1 --key cosign.key',
    'berth sign localhost:5000/app@sha256:… --key ci.key --format cosign-bundle',
    'berth sign localhost:5000/app:v1 --key ci.key --cert ci.crt --format notation',
  ],
  async run({ flags, args: [input] }) {
    if (!flags.key) throw new UsageError('--key FILE is required: the private key to sign with (berth key generate)');
    const list = formats(flags.format.length ? flags.format : ['cosign']);
    if (list.includes('notation') && !flags.cert)
      throw new UsageError('--format notation needs --cert FILE: the certificate of --key (berth key generate --cert)');
    const privateKey = privateKeyFile(flags.key);
    const certificates = flags.cert ? certificateFile(flags.cert) : undefined;
    const r = ref(input, 'IMAGE', 'sign');
    const repo = makeClient(flags).repository(r, { push: true });
    const subject = await resolveSubject(repo, r);
    const store = signatureStore(repo);
    const results: SignResult[] = [];
    for (const format of list) {
      const res = await cliSigning(() =>
        signImage(store, subject, {
          format,
          privateKey,
          publicKey: createPublicKey(privateKey),
          certificates,
          dockerReference: repositoryName(r),
        }),
      );
      results.push(res);
      if (!flags.json) {
        const where = res.tag ? `tag ${res.tag}` : `referrer ${res.manifest}${res.fallback ? ' (fallback tag)' : ''}`;
        console.log(`signed ${r.registry}/${r.repository}@${subject.digest} (${format}): ${where}`);
      }
    }
    if (flags.json) printJson({ reference: input, digest: subject.digest, signatures: results });
  },
});

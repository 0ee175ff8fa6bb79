// `berth key generate`: a cosign-compatible ECDSA P-256 key pair (cosign's encrypted PEM, or plain PKCS#8), and
// optionally a self-signed code-signing certificate for notation-style signatures.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import {
  encryptPrivateKey,
  generateKeyPair,
  privateKeyPem,
  publicKeyPem,
  selfSignedCertificatePem,
} from '../signing/index.js';
import { CLIError, defineCommand, flag, UsageError } from './command.js';
import { printJson } from './_client.js';
import { json } from './flags.js';
import { cliSigning } from './_signing.js';

export default defineCommand({
  usage: 'generate [--output-prefix PREFIX] [--plain] [--cert [--subject CN] [--days N]] [--force] [--json]',
  description: `Writes PREFIX.key and PREFIX.pub (default cosign.key / cosign.pub, as \`cosign generate-key-pair\`).
The private key is encrypted in cosign's format ("ENCRYPTED SIGSTORE PRIVATE KEY": scrypt + NaCl secretbox) with
the password in COSIGN_PASSWORD (may be empty), or written as plain PKCS#8 PEM with --plain. --cert also writes
PREFIX.crt, a self-signed code-signing certificate for the key (for \`berth sign --format notation\` and
\`notation verify\`'s trust store).`,
  flags: {
    'output-prefix': flag.string({ short: 'o', arg: 'PREFIX', default: 'cosign', help: 'where to write the files' }),
    plain: flag.boolean({ help: 'write the private key unencrypted (PKCS#8 PEM)' }),
    cert: flag.boolean({ help: 'also write PREFIX.crt, a self-signed code-signing certificate' }),
    subject: flag.string({
      arg: 'DN',
      default: 'berth',
      help: "the certificate's subject: a common name, or C=US,ST=WA,O=acme,CN=signer (notation's trusted identities need C, ST and O)",
    }),
    days: flag.int({ default: 365, min: 1, max: 36500, help: 'how long the certificate is valid' }),
    force: flag.boolean({ help: 'overwrite existing files' }),
    json,
  },
  args: ['VERB'],
  verbs: ['generate'],
  examples: [
    'COSIGN_PASSWORD=… berth key generate',
    'berth key generate --plain --cert --subject "C=US,ST=WA,O=acme,CN=ci signer" -o ci',
  ],
  async run({ flags, args: [verb] }) {
    if (verb !== 'generate') throw new UsageError(`key: expected generate, not "${verb}"; see \`berth key --help\``);
    const prefix = flags['output-prefix'];
    const files = { key: `${prefix}.key`, pub: `${prefix}.pub`, ...(flags.cert ? { cert: `${prefix}.crt` } : {}) };
    if (!flags.force)
      for (const f of Object.values(files))
        if (existsSync(f)) throw new CLIError(`${f} exists; pass --force to overwrite it, or -o another prefix`);
    const password = process.env.COSIGN_PASSWORD;
    if (!flags.plain && password === undefined)
      throw new UsageError(
        'set COSIGN_PASSWORD to the password for the private key (COSIGN_PASSWORD= for none), or pass --plain',
      );
    const pair = generateKeyPair();
    const keyText = flags.plain ? privateKeyPem(pair.privateKey) : encryptPrivateKey(pair.privateKey, password ?? '');
    await writeFile(files.key, keyText, { mode: 0o600 });
    await writeFile(files.pub, publicKeyPem(pair.publicKey), { mode: 0o644 });
    if (files.cert)
      await writeFile(
        files.cert,
        cliSigning(() => selfSignedCertificatePem(pair, { subject: flags.subject, days: flags.days })),
        {
          mode: 0o644,
        },
      );
    if (flags.json) printJson({ ...files, encrypted: !flags.plain });
    else {
      console.log(`private key: ${files.key}${flags.plain ? ' (unencrypted)' : ' (encrypted with COSIGN_PASSWORD)'}`);
      console.log(`public key:  ${files.pub}`);
      if (files.cert) console.log(`certificate: ${files.cert} (${flags.subject}, ${flags.days} days)`);
    }
  },
});

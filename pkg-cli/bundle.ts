// `berth bundle create|load|verify`: air-gapped bundles (client/bundle.ts) — images with their referrers in one OCI
// layout directory or tar, optionally incremental against a previous bundle, and loaded into a registry.
import { readFile } from 'node:fs/promises';
import { BundleError, createBundle, loadBundle, openBundle, type BundleImage } from '../client/bundle.js';
import { remoteSource, remoteTarget } from '../client/copy.js';
import type { CopyResult } from '../client/copy.js';
import { Repository } from '../client/remote.js';
import { ruleRepositories, ruleTags, signatureTags } from '../registry/mirror/sync.js';
import { parsePlatform } from '../spec/platform.js';
import { isValidName } from '../spec/reference.js';
import { formatBytes } from '../spec/units.js';
import { CLIError, defineCommand, EXIT, flag, UsageError } from './command.js';
import { makeClient, printJson } from './_client.js';
import { existingStorageConfig } from './_storage.js';
import { syncRulesOf } from './_sync.js';
import { jobs, platform, platforms, ref, REMOTE, registryHost, STORAGE } from './flags.js';

const VERBS = ['create', 'load', 'verify'] as const;

export default defineCommand({
  usage: [
    'create OUT REF… [-f FILE] [--since PREVIOUS] [--platform P]… [--no-referrers]',
    'create OUT -c berth.yaml --rule NAME… [--since PREVIOUS]',
    'load BUNDLE HOST[:PORT][/PREFIX]',
    'verify BUNDLE',
  ],
  description: `Carries images into a network that cannot reach their registry. \`create\` writes the images (by reference, or
those a sync rule of the config selects) with their signatures, SBOMs and other referrers into an OCI layout —
a directory, or a tar when OUT ends in .tar; with --since only blobs the previous bundle lacks are written.
\`load\` re-hashes every blob of the bundle, then pushes each image (and its referrers) to the registry, under
PREFIX when given; what the registry has already is not sent. \`verify\` only re-hashes.`,
  flags: {
    file: flag.string({ short: 'f', arg: 'FILE', complete: 'file', help: 'read references from FILE, one a line' }),
    since: flag.string({
      arg: 'PREVIOUS',
      complete: 'file',
      help: 'a previous bundle (directory or tar): leave out the blobs it holds',
    }),
    ...STORAGE,
    rule: flag.list({ arg: 'NAME', split: true, help: 'the images these sync rules of the config select' }),
    platform: platform('only this platform of each index (os/arch[/variant])'),
    'no-referrers': flag.boolean({ help: 'leave out signatures, SBOMs and other referrers' }),
    jobs: jobs('blobs transferred in parallel'),
    ...REMOTE,
  },
  verbs: VERBS,
  examples: [
    'berth bundle create week1.tar registry.example.com/app:1.4 registry.example.com/base:2',
    'berth bundle create week2.tar -f images.txt --since week1.tar',
    'berth bundle create mirror/ -c berth.yaml --rule alpine',
    'berth bundle load week1.tar registry.airgap.local',
  ],
  async run({ flags, args }) {
    const [verb, path, ...rest] = args;
    if (!VERBS.includes(verb as (typeof VERBS)[number]))
      throw new UsageError(`berth bundle ${verb ?? ''}: expected one of ${VERBS.join(', ')}`);
    if (!path) throw new UsageError(`berth bundle ${verb}: missing ${verb === 'create' ? 'OUT' : 'BUNDLE'}`);
    const say = (line: string) => !flags.json && console.error(line);
    const report = (image: string, r: CopyResult | Error) =>
      say(
        r instanceof Error
          ? `${image}: failed: ${r.message}`
          : `${image}: ${r.skipped && !r.manifests ? 'up to date' : `done (${formatBytes(r.blobs.bytes)})`}`,
      );
    try {
      if (verb === 'verify') {
        if (rest.length) throw new UsageError('berth bundle verify takes only BUNDLE');
        const b = await openBundle(path);
        await b.close();
        if (flags.json) printJson({ images: b.images });
        else console.log(`${path}: ${b.images.length} images, every blob matches its digest`);
        return;
      }
      if (verb === 'load') {
        if (rest.length !== 1) throw new UsageError('berth bundle load BUNDLE HOST[:PORT][/PREFIX]');
        const { host, prefix } = _target(rest[0]);
        const client = makeClient(flags);
        const b = await openBundle(path, { concurrency: flags.jobs });
        try {
          const r = await loadBundle(
            b,
            (repo) => remoteTarget(client.repository(`${host}/${prefix ? `${prefix}/` : ''}${repo}`, { push: true })),
            { concurrency: flags.jobs, onImage: report },
          );
          if (flags.json) printJson(r);
          else
            console.log(
              `loaded ${r.images} images (${r.referrers} referrers) into ${rest[0]}: ${r.blobs.written} blobs sent (${formatBytes(r.bytes)}), ${r.blobs.skipped} already there${r.failed ? `; ${r.failed} failed` : ''}`,
            );
          for (const e of r.errors) console.error(`  ${e}`);
          return r.failed ? EXIT.failure : 0;
        } finally {
          await b.close();
        }
      }
      const images = flags.rule?.length ? await _fromRules(flags) : await _fromRefs(rest, flags);
      if (!images.length) throw new CLIError('nothing to bundle: the references or rules select no image');
      const r = await createBundle(path, images, {
        since: flags.since,
        platforms: platforms(flags.platform),
        referrers: !flags['no-referrers'],
        concurrency: flags.jobs,
        onImage: report,
      });
      if (flags.json) printJson(r);
      else
        console.log(
          `wrote ${path}: ${r.images} images, ${r.referrers} referrers, ${r.blobs.written} blobs (${formatBytes(r.bytes)})${flags.since ? `, ${r.blobs.skipped} left to ${flags.since}` : ''}${r.failed ? `; ${r.failed} failed` : ''}`,
        );
      for (const e of r.errors) console.error(`  ${e}`);
      return r.failed ? EXIT.failure : 0;
    } catch (e) {
      if (e instanceof BundleError) throw new CLIError(e.message, EXIT.verification);
      throw e;
    }
  },
});

function _target(input: string): { host: string; prefix?: string } {
  const i = input.indexOf('/');
  const host = registryHost(i < 0 ? input : input.slice(0, i));
  const prefix = i < 0 ? undefined : input.slice(i + 1).replace(/\/+$/, '');
  if (prefix && !isValidName(prefix))
    throw new UsageError(
      `"${prefix}" is not a valid repository prefix; write HOST[:PORT]/PREFIX, e.g. localhost:5000/mirror`,
    );
  return { host, prefix };
}

async function _fromRefs(args: string[], flags: { file?: string; insecure?: boolean }): Promise<BundleImage[]> {
  const inputs = [...args];
  if (flags.file)
    inputs.push(
      ...(await readFile(flags.file, 'utf8'))
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#')),
    );
  if (!inputs.length)
    throw new UsageError('berth bundle create OUT REF…: name at least one image (or -f FILE, --rule)');
  const client = makeClient(flags);
  return inputs.map((input) => {
    const r = ref(input, 'REF', 'bundle');
    if (!r.tag) throw new UsageError(`${input}: name a tag (the bundle loads it under that tag)`);
    return {
      source: remoteSource(client.repository(r)),
      reference: r.digest ?? r.tag,
      repository: r.repository,
      tag: r.tag,
    };
  });
}

async function _fromRules(flags: Record<string, any>): Promise<BundleImage[]> {
  const config = existingStorageConfig('bundle create --rule', flags);
  const rules = syncRulesOf(config);
  const images: BundleImage[] = [];
  for (const name of flags.rule as string[]) {
    const r = rules.find((x) => x.name === name);
    if (!r)
      throw new CLIError(`no sync rule named ${name}; the config has ${rules.map((x) => x.name).join(', ') || 'none'}`);
    for (const p of r.rule.platforms ?? []) parsePlatform(p);
    for (const repo of await ruleRepositories(r)) {
      const { tags, all } = await ruleTags(r, repo);
      const local = r.prefix ? `${r.prefix}/${repo}` : repo;
      const remote = new Repository(r.registry(), repo);
      const source = remoteSource(remote);
      for (const tag of tags) images.push({ source, reference: tag, repository: local, tag });
      // cosign's tag-scheme signatures (sha256-<hex>.sig, .att, .sbom) of the selected images come along.
      if (r.rule.referrers !== false && !flags['no-referrers']) {
        const digests = new Set<string>();
        for (const tag of tags) {
          const d = await remote.headManifest(tag);
          if (d) digests.add(d.digest);
        }
        for (const tag of signatureTags(all, digests)) images.push({ source, reference: tag, repository: local, tag });
      }
    }
  }
  return images;
}

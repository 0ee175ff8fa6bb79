// `berth mutate REF`: change an image's config (labels, env, entrypoint/cmd, user, workdir, ports) or annotations
// without rebuilding it — on one image, or on every platform of an index (or those --platform picks). Only the
// config and manifests are written; layers stay where they are.
import { mutateEdit, rewrite, type ConfigEdits } from '../client/mutate.js';
import { CLIError, defineCommand, flag } from './command.js';
import { makeClient, printJson, TRANSPORT_HELP } from './_client.js';
import { platform, platforms, REMOTE, tagTo } from './flags.js';
import { argList, keyValues, openSource, openTarget, userError, written } from './_verbs.js';

const LIST_FORMS = `'["/bin/app","-v"]' or /bin/app,-v`;

export default defineCommand({
  usage: 'REF [flags]',
  description:
    "Changes the config or annotations of REF (an image, or each platform of an index) and writes the result to REF's\ntag, or to --tag. Prints the new digest. Layers are not re-uploaded.",
  flags: {
    label: flag.list({ arg: 'K=V', help: 'set a config label' }),
    annotation: flag.list({ arg: 'K=V', help: "set a manifest annotation (on an index also the index's own)" }),
    env: flag.list({ arg: 'K=V', help: 'set an environment variable, merged by name' }),
    entrypoint: flag.string({
      arg: 'LIST',
      help: `replace the entrypoint: ${LIST_FORMS} ('' removes it; drops cmd unless --cmd is given, as docker does)`,
    }),
    cmd: flag.string({ arg: 'LIST', help: 'replace the default arguments (same forms)' }),
    user: flag.string({ arg: 'U', help: 'user[:group] the process runs as' }),
    workdir: flag.string({ arg: 'DIR', help: 'working directory' }),
    expose: flag.list({ arg: 'PORT[/P]', help: 'add an exposed port, tcp unless /udp or /sctp' }),
    platform: platform('on an index, change only this platform (default: all)'),
    tag: tagTo,
    ...REMOTE,
  },
  args: ['REF'],
  notes: TRANSPORT_HELP,
  examples: [
    'berth mutate localhost:5000/app:v1 --label org.opencontainers.image.version=1.0 --env LOG=debug',
    `berth mutate localhost:5000/app:v1 --entrypoint '["/app","serve"]' -t localhost:5000/app:v1-serve`,
    'berth mutate oci:./layout:v1 --user 65532 -t oci:./layout:v1-nonroot',
  ],
  async run({ flags, args }) {
    const edits: ConfigEdits = {
      labels: keyValues(flags.label, '--label'),
      env: Object.entries(keyValues(flags.env, '--env')).map(([k, v]) => `${k}=${v}`),
      entrypoint: argList(flags.entrypoint, '--entrypoint'),
      cmd: argList(flags.cmd, '--cmd'),
      user: flags.user,
      workdir: flags.workdir,
      exposedPorts: flags.expose.length ? flags.expose : undefined,
    };
    const annotations = keyValues(flags.annotation, '--annotation');
    const lists = [flags.label, flags.annotation, flags.env, flags.expose].filter((l) => l.length);
    const values = [flags.entrypoint, flags.cmd, flags.user, flags.workdir].filter((v) => v !== undefined);
    if (!lists.length && !values.length)
      throw new CLIError(
        'nothing to change; pass --label, --annotation, --env, --entrypoint, --cmd, --user, --workdir or --expose',
      );
    const client = makeClient(flags);
    const src = await openSource(client, args[0], 'REF', 'mutate');
    const dst = await openTarget(client, src.image, flags.tag, 'mutate').catch(async (e) => {
      await src.close();
      throw e;
    });
    try {
      const r = await rewrite(src.source, src.reference, dst.target, dst.tag, mutateEdit(edits, annotations), {
        platforms: platforms(flags.platform),
        indexAnnotations: Object.keys(annotations).length ? (a) => ({ ...a, ...annotations }) : undefined,
      }).catch(userError);
      await dst.finish(r.digest).catch(userError);
      if (flags.json) printJson({ reference: written(dst.image, r.digest), ...r });
      else console.log(written(dst.image, r.digest));
    } finally {
      await Promise.all([src.close(), dst.close()]);
    }
  },
});

// `berth mutate REF`: change an image's config (labels, env, entrypoint/cmd, user, workdir, ports) or annotations
// without rebuilding it — on one image, or on every platform of an index (or those --platform picks). Only the
// config and manifests are written; layers stay where they are.
import { mutateEdit, rewrite, type ConfigEdits } from '../client/mutate.js';
import { CLIError, parseFlags, type LegacyCommand, legacyCommand } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, makeClient, platforms, positionals, printJson } from './_client.js';
import { argList, keyValues, openSource, openTarget, userError, written } from './_verbs.js';

const HELP = `Usage: berth mutate REF [flags]

Changes the config or annotations of REF (an image, or each platform of an index) and pushes the result to REF's
tag, or to --tag. Prints the new digest. Layers are not re-uploaded.

Flags:
  --label K=V          set a config label (repeatable)
  --annotation K=V     set a manifest annotation (repeatable; on an index also the index's own)
  --env K=V            set an environment variable, merged by name (repeatable)
  --entrypoint LIST    replace the entrypoint: '["/bin/app","-v"]' or /bin/app,-v ('' removes it; drops cmd
                       unless --cmd is given, as docker does)
  --cmd LIST           replace the default arguments (same forms)
  --user U             user[:group] the process runs as
  --workdir DIR        working directory
  --expose PORT[/P]    add an exposed port, tcp unless /udp or /sctp (repeatable)
  --platform P         on an index, change only this platform (repeatable; default: all)
  -t, --tag REF        write the result here instead of REF's tag
${COMMON_HELP}

Examples:
  berth mutate localhost:5000/app:v1 --label org.opencontainers.image.version=1.0 --env LOG=debug
  berth mutate localhost:5000/app:v1 --entrypoint '["/app","serve"]' -t localhost:5000/app:v1-serve`;

const command: LegacyCommand = {
  name: 'mutate',
  summary: "change an image's config or annotations (all platforms of an index)",
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('mutate', argv, {
      ...COMMON_FLAGS,
      label: { type: 'string', multiple: true },
      annotation: { type: 'string', multiple: true },
      env: { type: 'string', multiple: true },
      entrypoint: { type: 'string' },
      cmd: { type: 'string' },
      user: { type: 'string' },
      workdir: { type: 'string' },
      expose: { type: 'string', multiple: true },
      platform: { type: 'string', multiple: true },
      tag: { type: 'string', short: 't' },
    });
    const client = makeClient(values);
    const src = openSource(client, positionals(pos, 1, 'berth mutate REF [flags]')[0], 'REF', 'mutate');
    const edits: ConfigEdits = {
      labels: keyValues(values.label, '--label'),
      env: Object.entries(keyValues(values.env, '--env')).map(([k, v]) => `${k}=${v}`),
      entrypoint: argList(values.entrypoint, '--entrypoint'),
      cmd: argList(values.cmd, '--cmd'),
      user: values.user,
      workdir: values.workdir,
      exposedPorts: values.expose,
    };
    const annotations = keyValues(values.annotation, '--annotation');
    const changes = [values.label, values.annotation, values.env, values.entrypoint, values.cmd, values.user]
      .concat([values.workdir, values.expose])
      .filter((v) => v !== undefined);
    if (!changes.length)
      throw new CLIError(
        'nothing to change; pass --label, --annotation, --env, --entrypoint, --cmd, --user, --workdir or --expose',
      );
    const dst = openTarget(client, src.ref, values.tag, 'mutate');
    const r = await rewrite(src.source, src.reference, dst.target, dst.tag, mutateEdit(edits, annotations), {
      platforms: platforms(values.platform),
      indexAnnotations: Object.keys(annotations).length ? (a) => ({ ...a, ...annotations }) : undefined,
    }).catch(userError);
    if (values.json) printJson({ reference: written(dst.ref, r.digest), ...r });
    else console.log(written(dst.ref, r.digest));
  },
};
export default legacyCommand(command);

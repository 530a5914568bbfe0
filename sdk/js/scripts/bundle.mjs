// Bundles the Node.js entry points after `tsc` (which type-checks and emits the declarations
// and tests). Why: Node's ESM loader pays a cost per module (resolve, read, parse, link); the
// SDK's 20 modules cost about three times one bundled file, and the import budget is 5 ms (see
// BENCHMARKS.md). The main file holds what init and recording need; the `telemetry` subcommand
// and the delivery code (both only ever used asynchronously) are bundles of their own, loaded
// by dynamic import() when used. Each bundle is self-contained (no shared chunks: every chunk
// would be one more module to load); the few helpers they share are stateless.
// The browser entries (`optel/react`, `optel/browser`) stay as tsc emits them: the
// application's bundler handles them.
import { build } from 'esbuild';

const lazy = { './cli.js': './optel-cli.js', './sending.js': './optel-sending.js' };
const splitDynamicImports = {
  name: 'split-dynamic-imports',
  setup(b) {
    b.onResolve({ filter: /^\.\/(cli|sending)\.js$/ }, (args) =>
      args.kind === 'dynamic-import' ? { path: lazy[args.path], external: true } : undefined,
    );
  },
};

const common = {
  outdir: 'build/dist',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node18',
  external: ['smol-toml', 'ci-info'],
  minifyWhitespace: true,
  minifySyntax: true,
  minifyIdentifiers: !process.env.OPTEL_BUNDLE_READABLE,
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [splitDynamicImports],
};

await build({ ...common, entryPoints: { optel: 'src/index.ts' } });
await build({ ...common, entryPoints: { 'optel-cli': 'src/cli.ts' } });
await build({ ...common, entryPoints: { 'optel-sending': 'src/sending.ts' } });
await build({ ...common, entryPoints: { 'flush-worker': 'src/flush-worker.ts' } });

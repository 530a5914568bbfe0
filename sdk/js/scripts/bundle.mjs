// Bundles the Node.js entry points into single ESM files after `tsc` (which type-checks and
// emits the declarations and tests). Why: Node's ESM loader pays a cost per module (resolve,
// read, parse, link); with the SDK's 16 modules that cost was three times the cost of one
// bundled file, and the import budget is 5 ms (see BENCHMARKS.md). The browser entries
// (`optel/react`, `optel/browser`) stay as tsc emits them: the application's bundler handles them.
import { build } from 'esbuild';

await build({
  entryPoints: { optel: 'src/index.ts', 'flush-worker': 'src/flush-worker.ts' },
  outdir: 'build/dist',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node18',
  external: ['smol-toml', 'ci-info'],
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  logLevel: 'warning',
});

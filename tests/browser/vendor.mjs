// Copies the chart library's minified build and its license from node_modules (installed by
// `npm ci` at the version pinned in package-lock.json) into the collector's embedded dashboard
// assets. Run after changing the chart.js version, then update CHART_JS_VERSION in
// crates/optel-collector/src/dashboard.rs and docs/adr/005-dashboard-charts.md.
import { copyFileSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const dest = here('../../crates/optel-collector/dashboard/vendor/');
copyFileSync(here('node_modules/chart.js/dist/chart.umd.min.js'), dest + 'chart.umd.min.js');
copyFileSync(here('node_modules/chart.js/LICENSE.md'), dest + 'LICENSE-chart.js.md');
const { version } = JSON.parse(readFileSync(here('node_modules/chart.js/package.json'), 'utf8'));
console.log(`vendored chart.js ${version} into ${dest}`);

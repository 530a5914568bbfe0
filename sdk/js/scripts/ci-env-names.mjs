// The environment variables ci-info reads: its generic checks and every vendor's `env`.
import { createRequire } from 'node:module';

export function ciEnvNames() {
  const require = createRequire(import.meta.url);
  const vendors = require('ci-info/vendors.json');
  const names = new Set(['CI', 'BUILD_ID', 'BUILD_NUMBER', 'CI_APP_ID', 'CI_BUILD_ID', 'CI_BUILD_NUMBER', 'CI_NAME', 'CONTINUOUS_INTEGRATION', 'RUN_ID']);
  const add = (spec) => {
    if (typeof spec === 'string') names.add(spec);
    else if (Array.isArray(spec)) spec.forEach(add);
    else if (spec && typeof spec === 'object') {
      if ('env' in spec) add(spec.env);
      else if ('any' in spec) add(spec.any);
      else Object.keys(spec).forEach((k) => names.add(k));
    }
  };
  for (const v of vendors) add(v.env);
  return [...names].sort();
}

// Adds 1 to the daily request count of the breaker record in DIR, N times: run concurrently by
// units.test.ts to show that concurrent processes of one install lose no count.
import { Breaker } from '../../src/delivery.js';

const [dir, n] = process.argv.slice(2);
const breaker = new Breaker(dir!);
for (let i = 0; i < Number(n); i++) {
  breaker.update((s) => {
    s.requests += 1;
  });
}

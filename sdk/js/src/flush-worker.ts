/**
 * The flush child of `process.exit()` with a long exit budget (CI): sends the queue of one data
 * directory and exits. Started with `spawnSync` and killed at the budget by its parent, so it
 * never outlives the tool. Reads its job from `OPTEL_FLUSH_JOB`.
 */
import { join } from 'node:path';
import { Breaker, Sender } from './delivery.js';
import { HttpExporter } from './http.js';
import { Queue } from './queue.js';

interface Job {
  dataDir: string;
  url: string;
  key?: string;
  userAgent: string;
  gzip: boolean;
  policy: { requestTimeoutMs: number; dailyRequestCap: number };
  budgetMs: number;
}

const job = JSON.parse(process.env.OPTEL_FLUSH_JOB ?? '{}') as Job;
if (job.dataDir && job.url) {
  const sender = new Sender(new Queue(join(job.dataDir, 'queue')), new Breaker(job.dataDir), job.policy, new HttpExporter(job.url, job.key, job.userAgent, job.gzip));
  process.on('exit', () => sender.releaseAll());
  const hold = setTimeout(() => {}, job.budgetMs);
  void sender.round(Date.now() + job.budgetMs).finally(() => clearTimeout(hold));
}

/**
 * Before a candidate is measured it must answer every workload correctly through nginx (twice, so
 * a kept upstream connection is reused): a fast wrong answer is not a result.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';

export function request(port, path, body) {
  return new Promise((resolve, reject) => {
    const headers = body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : {};
    const req = http.request({ host: '127.0.0.1', port, path, method: body ? 'POST' : 'GET', agent: false, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`${body ? 'POST' : 'GET'} ${path}: no answer in 10 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

const sha = (b) => createHash('sha256').update(b).digest('hex');

/** Waits (up to `timeoutMs`) for a 200 on `path`: a backend's workers may still be booting after its port accepts. */
export async function waitForAnswer(port, path, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const r = await request(port, path);
      if (r.status === 200) return;
      last = `status ${r.status}`;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline) throw new Error(`no 200 on ${path} within ${timeoutMs} ms (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Checks each workload's answer; resolves with a list of problems (empty: all good). `expected`
 * maps a path to the body it must return; a POST workload's answer is the body's length.
 */
export async function checkAnswers(port, workloads, expected) {
  const problems = [];
  for (let i = 0; i < 2; i++) {
    for (const w of workloads) {
      try {
        const r = w.post ? await request(port, w.path, Buffer.alloc(w.post, 'a')) : await request(port, w.path);
        const want = w.post ? Buffer.from(String(w.post)) : expected[w.path];
        if (r.status !== 200 || sha(r.body) !== sha(want)) problems.push(`${w.name}: status ${r.status}, ${r.body.length} bytes ${JSON.stringify(r.body.subarray(0, 60).toString())}, expected ${want.length} bytes`);
      } catch (err) {
        problems.push(`${w.name}: ${err.message}`);
      }
    }
    if (problems.length > 0) break;
  }
  return problems;
}

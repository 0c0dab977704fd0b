// Capped exponential backoff with jitter (protocol.md: 0.1 s x 2^n, at most 10 s, times 0.5-1.5).

/** @param {number} attempt 0 for the first retry @param {number} [base] ms @param {number} [cap] ms */
export function backoffDelay(attempt, base = 100, cap = 10_000) {
  return Math.min(cap, base * 2 ** Math.min(attempt, 20)) * (0.5 + Math.random());
}

/** Resolve after `ms`, or reject with the signal's reason when it aborts first. @param {number} ms @param {AbortSignal} [signal] */
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const done = () => { signal?.removeEventListener("abort", stop); resolve(undefined); };
    const timer = setTimeout(done, ms);
    const stop = () => { clearTimeout(timer); reject(signal?.reason); };
    signal?.addEventListener("abort", stop, { once: true });
  });
}

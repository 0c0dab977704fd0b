// A tiny typed event emitter: listeners by event name, each called in turn; one listener's error
// is rethrown on its own (so it shows) without keeping the others from running.

/** @template {Record<string, any>} E event name -> the data its listeners get */
export class Emitter {
  constructor() {
    /** @type {Map<keyof E, Set<(data: any) => void>>} */
    this.listeners = new Map();
  }

  /**
   * @template {keyof E} K
   * @param {K} event @param {(data: E[K]) => void} fn
   * @returns {() => void} unsubscribe
   */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)?.add(fn);
    return () => this.listeners.get(event)?.delete(fn);
  }

  /** @template {keyof E} K @param {K} event @param {E[K]} data */
  emit(event, data) {
    for (const fn of this.listeners.get(event) || []) {
      try {
        fn(data);
      } catch (err) {
        queueMicrotask(() => { throw err; });  // a listener's bug must not break the emitter
      }
    }
  }
}

/**
 * The service-wide bound on request bytes held in Node (params not yet routed, bodies not yet
 * taken by a worker): every FastCGI connection adds and removes its share here, so many clients
 * together cannot grow the service without limit (`maxBufferedBytes`).
 */

/** Bytes held by all connections, against a limit. */
export class HeldBudget {
  readonly limit: number;
  #held = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  /** True while the held bytes are over the limit. */
  get exceeded(): boolean {
    return this.#held > this.limit;
  }

  /** Adds `delta` (negative to release); true if the total is within the limit afterwards. */
  add(delta: number): boolean {
    this.#held += delta;
    return this.#held <= this.limit;
  }
}

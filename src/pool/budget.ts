/**
 * The service-wide worker budget (`maxTotalWorkers`): every pool takes a unit before it spawns a
 * worker and gives it back when that worker's process is gone, so no mix of apps and scaling can
 * run more Python processes than the operator allowed.
 */

/** A counter of worker processes shared by all pools. */
export class WorkerBudget {
  readonly limit: number;
  #used = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Worker processes alive (or starting) in all pools. */
  get used(): number {
    return this.#used;
  }

  /** Units still free. */
  get available(): number {
    return Math.max(0, this.limit - this.#used);
  }

  /** Takes one unit; false when the budget is spent (the caller must not spawn). */
  take(): boolean {
    if (this.#used >= this.limit) return false;
    this.#used++;
    return true;
  }

  /** Gives back a unit taken with take(). */
  give(): void {
    if (this.#used > 0) this.#used--;
  }
}

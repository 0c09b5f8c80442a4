/** Grouping a worker's stderr into whole tracebacks (corral dev). */
import { describe, expect, it, vi } from 'vitest';
import { TracebackLines, type StderrItem } from '../../src/log/traceback-lines.js';

function group(lines: string[]): StderrItem[] {
  const out: StderrItem[] = [];
  const t = new TracebackLines((i) => out.push(i));
  for (const l of lines) t.push(l);
  t.flush();
  return out;
}

describe('TracebackLines', () => {
  it('passes plain lines through and makes a traceback one item, named by its exception line', () => {
    const tb = ['Traceback (most recent call last):', '  File "/app/wsgi.py", line 3, in <module>', '    import missing', "ModuleNotFoundError: No module named 'missing'"];
    expect(group(['starting', ...tb, 'after'])).toEqual([
      { kind: 'line', text: 'starting' },
      { kind: 'traceback', text: tb.join('\n'), summary: "ModuleNotFoundError: No module named 'missing'" },
      { kind: 'line', text: 'after' },
    ]);
  });

  it('keeps a chained exception in the same item and names the last exception', () => {
    const tb = [
      'Traceback (most recent call last):', '  File "a.py", line 1, in f', '    x()', 'KeyError: 1', '',
      'During handling of the above exception, another exception occurred:', '',
      'Traceback (most recent call last):', '  File "a.py", line 3, in g', '    raise ValueError("v")', 'ValueError: v',
    ];
    expect(group(tb)).toEqual([{ kind: 'traceback', text: tb.join('\n'), summary: 'ValueError: v' }]);
  });

  it('flushes a traceback cut short (the worker died) by itself', () => {
    vi.useFakeTimers();
    const out: StderrItem[] = [];
    const t = new TracebackLines((i) => out.push(i));
    t.push('Traceback (most recent call last):');
    t.push('  File "a.py", line 1, in f');
    expect(out).toEqual([]);
    vi.advanceTimersByTime(250);
    vi.useRealTimers();
    expect(out).toEqual([{ kind: 'traceback', text: 'Traceback (most recent call last):\n  File "a.py", line 1, in f', summary: '  File "a.py", line 1, in f'.trim() }]);
  });
});

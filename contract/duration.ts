/**
 * A plan duration ("30s", "1h30m", "2d") in milliseconds. Plan durations are validated when the plan
 * loads; workflow code and activities both read them, so this has no dependency at all.
 */
export function durationMs(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) total += Number(n) * (units[unit!] ?? 0);
  return total;
}

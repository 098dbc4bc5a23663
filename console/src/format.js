// Small formatting helpers (numbers and durations as people read them).
const integer = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });

export const int = (n) => (n === null || n === undefined ? '–' : integer.format(n));
export const dec = (n) => (n === null || n === undefined ? '–' : oneDecimal.format(n));

export function duration(seconds) {
  if (seconds === null || seconds === undefined || seconds < 0) return 'unknown';
  if (seconds < 1) return 'under a second';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${dec(seconds / 3600)} h`;
}

export function bytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : dec(n)} ${units[i]}`;
}

export function clock(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString('en-GB', { hour12: false });
}

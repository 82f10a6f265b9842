// The one way the benchmarks print tables: columns two spaces apart, indented by two, numbers
// right-aligned. `formatRow` prints a row as soon as it is measured (fixed widths); `printTable`
// prints collected rows with each column as wide as its widest cell; `Results` is the
// "what, value, target, MET/MISSED" table the DESIGN §7 benchmarks end with.

export interface Column {
  /** Heading printed above the column; a table whose columns have no title prints no heading. */
  title?: string;
  /** "right" for numbers; "left" (the default) for text. */
  align?: "left" | "right";
  /** Least width; printTable widens it to the widest cell or title. */
  width?: number;
}

const INDENT = "  ";
const GAP = "  ";

/** One row laid out in `columns` (cells past the last column are appended as they are). */
export function formatRow(columns: readonly Column[], cells: readonly string[]): string {
  const out = cells.map((cell, i) => {
    const c = columns[i];
    if (!c) return cell;
    return c.align === "right" ? cell.padStart(c.width ?? 0) : cell.padEnd(c.width ?? 0);
  });
  return (INDENT + out.join(GAP)).trimEnd();
}

/** Prints the heading (if any column has a title) and the rows, each column as wide as it needs. */
export function printTable(columns: readonly Column[], rows: readonly (readonly string[])[]): void {
  const sized = columns.map((c, i) => ({
    ...c,
    width: Math.max(c.width ?? 0, c.title?.length ?? 0, ...rows.map((r) => r[i]?.length ?? 0)),
  }));
  if (columns.some((c) => c.title)) console.log(formatRow(sized, columns.map((c) => c.title ?? "")));
  for (const r of rows) console.log(formatRow(sized, r));
}

/** Measurements held against the targets they are meant to meet, printed as one table at the end. */
export class Results {
  private readonly rows: string[][] = [];

  /** One line: what was measured, its value, the target ("(info)" for none) and whether it was met. */
  readonly row = (what: string, value: string, target?: string, met?: boolean): void => {
    const verdict = met === undefined ? (target ?? "") : `${target}  ${met ? "MET" : "MISSED"}`;
    this.rows.push([what, value, verdict]);
  };

  print(): void {
    printTable([{}, {}, {}], this.rows);
  }
}

/** The median of xs (the upper one of an even count). */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** A count or a time rounded to a whole number, with thousands separators: "1,150". */
export function whole(n: number): string {
  return Math.round(n).toLocaleString("en");
}

/** "median (min–max)" of xs, as whole numbers. */
export function medianRange(xs: readonly number[]): string {
  return `${whole(median(xs))} (${whole(Math.min(...xs))}–${whole(Math.max(...xs))})`;
}

/** Measurements collected per case over interleaved rounds, in round order. */
export class Samples {
  private readonly byCase = new Map<string, number[]>();

  add(key: string, value: number): void {
    const xs = this.byCase.get(key);
    if (xs) xs.push(value);
    else this.byCase.set(key, [value]);
  }

  get(key: string): number[] {
    const xs = this.byCase.get(key);
    if (!xs) throw new Error(`no samples for ${key}`);
    return xs;
  }
}

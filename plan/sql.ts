// What tiershift needs to know about a sql step's statements before running them: where one ends, whether
// PostgreSQL lets it run inside a transaction, whether it changes the schema, and whether it would break
// logical replication in the middle of a sync. Keyword rules on the statement's text, not a parser: they
// only decide where and how a statement runs, and PostgreSQL itself still judges every statement.
//
// Pure (no node: modules): the plan loader and the activities both use it.

/**
 * The statements of a script, split at top-level semicolons. Quotes ('…', "…", E'…'), dollar quotes
 * ($tag$…$tag$) and comments (-- and nested /* *\/) are skipped, so a function body stays whole.
 * Comment-only pieces are dropped; each statement keeps its text without the trailing semicolon.
 */
export function splitStatements(script: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  const n = script.length;
  const push = (end: number) => {
    const text = script.slice(start, end).trim();
    if (stripComments(text).trim()) out.push(text);
  };
  while (i < n) {
    const c = script[i]!;
    const next = script[i + 1];
    if (c === '-' && next === '-') {
      const end = script.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth) {
        if (script[i] === '/' && script[i + 1] === '*') (depth += 1), (i += 2);
        else if (script[i] === '*' && script[i + 1] === '/') (depth -= 1), (i += 2);
        else i += 1;
      }
    } else if (c === "'" || c === '"') {
      // A doubled quote inside is the quote itself; E'…' strings also escape with a backslash.
      const escapes = c === "'" && /[eE]/.test(script[i - 1] ?? '') && !/\w/.test(script[i - 2] ?? '');
      i += 1;
      while (i < n) {
        if (escapes && script[i] === '\\') i += 2;
        else if (script[i] === c && script[i + 1] === c) i += 2;
        else if (script[i] === c) break;
        else i += 1;
      }
      i += 1;
    } else if (c === '$') {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(script.slice(i));
      if (tag && !/\w/.test(script[i - 1] ?? '')) {
        const end = script.indexOf(tag[0], i + tag[0].length);
        i = end < 0 ? n : end + tag[0].length;
      } else i += 1;
    } else if (c === ';') {
      push(i);
      i += 1;
      start = i;
    } else i += 1;
  }
  push(n);
  return out;
}

function stripComments(text: string): string {
  return text.replace(/--[^\n]*/g, ' ').replace(/\/\*[\s\S]*?\*\//g, ' ');
}

/** The statement's words, lowercased, comments out, whitespace collapsed: what the rules below read. */
function words(statement: string): string {
  return stripComments(statement).replace(/\s+/g, ' ').trim().toLowerCase();
}

/** PostgreSQL refuses these inside a transaction block, so each runs alone. */
export function needsOwnTransaction(statement: string): boolean {
  const w = words(statement);
  return (
    /^(create (unique )?index|drop index|reindex)\b.*\bconcurrently\b/.test(w) ||
    /^(vacuum|alter system)\b/.test(w) ||
    /^(create|drop) (database|tablespace)\b/.test(w) ||
    /^alter subscription\b.*\b(refresh|enable|disable)\b/.test(w)
  );
}

/** The index a CREATE INDEX CONCURRENTLY builds; undefined for other statements or an unnamed index. */
export function concurrentIndex(statement: string): { named: boolean; name?: string } | undefined {
  const w = stripComments(statement).replace(/\s+/g, ' ').trim();
  const m = /^create (?:unique )?index concurrently (?:if not exists )?(?!on\b)("(?:[^"]|"")+"|[A-Za-z_][\w$]*)? ?(?:on\b|$)/i.exec(w);
  if (!m) return /^create (unique )?index concurrently\b/i.test(w) ? { named: false } : undefined;
  if (!m[1]) return { named: false };
  const name = m[1].startsWith('"') ? m[1].slice(1, -1).replace(/""/g, '"') : m[1].toLowerCase();
  return { named: true, name };
}

/** Schema changes (which logical replication does not carry), as opposed to changes of rows (which it does). */
export function isSchemaChange(statement: string): boolean {
  return /^(create|alter|drop|comment on|grant|revoke|reindex|security label)\b/.test(words(statement));
}

/**
 * A schema change that breaks logical replication while it runs (the source sends rows the target can
 * no longer take, or the verification compares tables that no longer match), with the safe way to get
 * the same result. Undefined when the statement is safe mid-sync.
 */
export function breaksReplication(statement: string): { what: string; instead: string } | undefined {
  const w = words(statement);
  if (/^alter table\b/.test(w)) {
    if (/\brename to\b/.test(w)) return { what: 'renames a replicated table', instead: 'rename it in a sql step after the finalize that ends the sync' };
    if (/\brename (column )?[^ ]+ to\b/.test(w) && !/\brename constraint\b/.test(w)) {
      return { what: 'renames a column of a replicated table', instead: 'add the new column, copy the values into it, and drop the old one in a sql step after the finalize that ends the sync' };
    }
    if (/\balter (column )?[^ ]+ (set data )?type\b/.test(w)) {
      return { what: 'changes the type of a column of a replicated table', instead: 'add a column of the new type, backfill it, and drop the old one in a sql step after the finalize that ends the sync' };
    }
    if (/\bdrop (?!constraint\b|default\b|not null\b|identity\b|expression\b)/.test(w.replace(/\balter (column )?[^ ]+ drop\b/g, ''))) {
      return { what: 'drops a column of a replicated table', instead: 'stop using it now and drop it in a sql step after the finalize that ends the sync' };
    }
  }
  if (/^drop table\b/.test(w)) return { what: 'drops a replicated table', instead: 'drop it in a sql step after the finalize that ends the sync' };
  return undefined;
}

/** A statement on one line, shortened for the dry run and the status. */
export function oneLine(statement: string, max = 120): string {
  const text = statement.replace(/\s+/g, ' ').trim();
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

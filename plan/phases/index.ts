// Every kind of phase a plan may hold, in the order the docs list them. Adding a kind: a module beside
// this file (schema, steps, checks, undo wording, dry-run detail), one line here, its activity in
// activities/index.ts and its step in workflows/migration.ts.
import { app } from './app';
import { backup } from './backup';
import { check } from './check';
import { data } from './data';
import { finalize } from './finalize';
import { gate } from './gate';
import { infra } from './infra';
import type { PhaseKind } from './kit';
import { run } from './run';
import { sql } from './sql';
import { resource } from './resource';
import { traffic } from './traffic';
import { verify } from './verify';

export const PHASES = { check, backup, gate, infra, app, data, sql, run, verify, traffic, finalize, resource } satisfies Record<string, PhaseKind>;

export type PhaseKindName = keyof typeof PHASES;
export const PHASE_KINDS = Object.keys(PHASES) as PhaseKindName[];

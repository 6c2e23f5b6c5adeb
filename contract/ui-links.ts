// Links into the Temporal Web UI, printed by the CLI. Kept apart from connection.ts, which loads the
// profile reader: printing a link (or `--version`) must not load any Temporal module.
import type { ResolvedConnection } from './connection';

export function workflowUrl(resolved: ResolvedConnection, workflowId: string): string | undefined {
  return resolved.uiUrl && `${resolved.uiUrl}/namespaces/${resolved.namespace}/workflows/${encodeURIComponent(workflowId)}`;
}

/**
 * The UI's workflow list filtered by a visibility query. A link can carry only the query: the UI keeps
 * its list columns in the browser's own storage, and takes none from the address.
 */
export function workflowListUrl(resolved: ResolvedConnection, query: string): string | undefined {
  return resolved.uiUrl && `${resolved.uiUrl}/namespaces/${resolved.namespace}/workflows?query=${encodeURIComponent(query)}`;
}

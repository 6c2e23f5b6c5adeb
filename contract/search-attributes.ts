import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

// Custom search attributes let operators filter migrations in the Temporal UI list view.
// The sandbox registers exactly these at dev-server start; one definition serves both.
export const MigrationState = defineSearchAttributeKey('MigrationState', SearchAttributeType.KEYWORD);
export const MigrationPhase = defineSearchAttributeKey('MigrationPhase', SearchAttributeType.KEYWORD);
export const PendingGate = defineSearchAttributeKey('PendingGate', SearchAttributeType.KEYWORD);
export const PlanName = defineSearchAttributeKey('PlanName', SearchAttributeType.KEYWORD);
export const TrafficWeight = defineSearchAttributeKey('TrafficWeight', SearchAttributeType.INT);

export const SEARCH_ATTRIBUTES = [MigrationState, MigrationPhase, PendingGate, PlanName, TrafficWeight];

/** `--search-attribute Name=Type` arguments for `temporal server start-dev`. */
export function devServerSearchAttributeArgs(): string[] {
  const cliType: Record<string, string> = { KEYWORD: 'Keyword', INT: 'Int', TEXT: 'Text', BOOL: 'Bool', DOUBLE: 'Double', DATETIME: 'Datetime', KEYWORD_LIST: 'KeywordList' };
  return SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=${cliType[key.type] ?? key.type}`]);
}

// Pure derivations from the API's records that several pages need.

import type { DeploymentEvent, Endpoint, Model, TrainingRun } from './types';

function newestFirst<T>(items: readonly T[], at: (t: T) => string): T[] {
  return [...items].sort((a, b) => Date.parse(at(b)) - Date.parse(at(a)));
}

/** The models oldest first, each with its version number (1 for the first ever trained). */
export function versions(models: readonly Model[]): { model: Model; version: number }[] {
  return newestFirst(models, (m) => m.created_at)
    .reverse()
    .map((model, i) => ({ model, version: i + 1 }));
}

/** Model id → version number. */
export function versionMap(models: readonly Model[]): Map<string, number> {
  return new Map(versions(models).map(({ model, version }) => [model.id, version]));
}

/** The newest staged model: the one waiting for review. */
export function newestStaged(models: readonly Model[]): Model | undefined {
  return newestFirst(models, (m) => m.created_at).find((m) => m.status === 'staged');
}

/** The model the endpoint serves: the endpoint's word first, else the model marked deployed. */
export function servingModel(models: readonly Model[], endpoint?: Endpoint | null): Model | undefined {
  const id = endpoint?.serving_model_id;
  if (id) {
    const m = models.find((x) => x.id === id);
    if (m) return m;
  }
  return newestFirst(models, (m) => m.updated_at).find((m) => m.status === 'deployed');
}

/** Endpoint states in which the API refuses another deployment (it allows none, InService, Failed). */
export function endpointBusy(endpoint?: Endpoint | null): boolean {
  if (!endpoint) return false;
  return !['none', 'InService', 'Failed'].includes(endpoint.status);
}

/** A deployment runs: the endpoint is changing, or a model is being deployed. */
export function deploymentInProgress(models: readonly Model[], endpoint?: Endpoint | null): boolean {
  return endpointBusy(endpoint) || models.some((m) => m.status === 'deploying');
}

/** The model being deployed, if any. */
export function deployingModel(models: readonly Model[]): Model | undefined {
  return models.find((m) => m.status === 'deploying');
}

/** A training run is under way. */
export function trainingInProgress(runs: readonly TrainingRun[]): boolean {
  return runs.some((r) => r.status === 'in_progress');
}

/** The runs newest first. */
export function sortRuns(runs: readonly TrainingRun[]): TrainingRun[] {
  return newestFirst(runs, (r) => r.started_at);
}

/**
 * The model ids that can be rolled back to (superseded: deployed before, replaced since), each
 * with the newest timeline event that names it, where the rollback button goes.
 */
export function rollbackTargets(events: readonly DeploymentEvent[]): Map<string, DeploymentEvent> {
  const out = new Map<string, DeploymentEvent>();
  for (const e of newestFirst(events, (x) => x.at)) {
    if (e.outcome === 'superseded' && !out.has(e.model_id)) out.set(e.model_id, e);
  }
  return out;
}

/** Is an email address plausible? The same modest rule as the API: the confirmation mail is the real check. */
export function validEmail(raw: string): boolean {
  const e = raw.trim();
  const at = e.indexOf('@');
  if (at <= 0 || at !== e.lastIndexOf('@')) return false;
  const local = e.slice(0, at);
  const domain = e.slice(at + 1);
  return (
    e.length <= 254 &&
    local.length <= 64 &&
    domain.includes('.') &&
    !domain.startsWith('.') &&
    !domain.endsWith('.') &&
    !domain.includes('..') &&
    !/[\s\u0000-\u001f\u007f]/.test(e)
  );
}

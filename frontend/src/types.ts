// The API's shapes, as functions/api/openapi.yaml declares them. Optional fields are left out
// by the API when they have no value (never null).

export const MODEL_STATUSES = [
  'training',
  'staged',
  'failed',
  'deploying',
  'rejected',
  'deployed',
  'deploy_failed',
  'superseded',
  'retired',
] as const;
export type ModelStatus = (typeof MODEL_STATUSES)[number];

export interface ConfusionMatrix {
  tp: number;
  tn: number;
  fp: number;
  fn: number;
}

export interface Metrics {
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
  auc_roc: number;
  loss: number;
  support: number;
  confusion_matrix: ConfusionMatrix;
  positive_class?: string;
  dataset?: Record<string, unknown>;
}

export type DecisionAction = 'accept' | 'reject' | 'rollback';

export interface Decision {
  action: DecisionAction;
  by: string;
  at: string;
  reason: string;
}

export interface Model {
  id: string;
  status: ModelStatus;
  created_at: string;
  updated_at: string;
  dataset: string;
  dataset_etag?: string;
  training_job: string;
  model_artifact?: string;
  endpoint_config?: string;
  metrics?: Metrics;
  failure_reason?: string;
  decisions: Decision[];
}

export interface ModelList {
  models: Model[];
}

/** The actor is the signed-in user (from the ID token); the API ignores a `by` field. */
export interface DecisionRequest {
  reason: string;
}

export interface DeploymentStarted {
  deployment_id: string;
  model_id: string;
}

export interface TrainingStarted {
  job: string;
  model_id: string;
  dataset: string;
}

export type RunStatus = 'in_progress' | 'completed' | 'failed';

export interface TrainingRun {
  job: string;
  model_id: string;
  dataset: string;
  dataset_etag?: string;
  status: RunStatus;
  model_status: ModelStatus;
  started_at: string;
  updated_at: string;
  failure_reason?: string;
}

export interface TrainingRunList {
  runs: TrainingRun[];
}

export interface DeploymentEvent {
  at: string;
  action: DecisionAction;
  by: string;
  reason: string;
  model_id: string;
  outcome: ModelStatus;
}

export interface DeploymentList {
  deployments: DeploymentEvent[];
}

export type EndpointStatus =
  | 'none'
  | 'OutOfService'
  | 'Creating'
  | 'Updating'
  | 'SystemUpdating'
  | 'RollingBack'
  | 'InService'
  | 'Deleting'
  | 'Failed'
  | 'UpdateRollbackFailed';

export interface Endpoint {
  name: string;
  status: EndpointStatus;
  config_name?: string;
  failure_reason?: string;
  last_modified?: string;
  serving_model_id?: string;
}

export interface Prediction {
  label: string;
  confidence: number;
  probabilities: Record<string, number>;
  model_id: string;
}

export interface SubscriptionPending {
  subscription: 'pending confirmation';
}

export interface ErrorBody {
  error: { code: string; message: string; fix: string };
}

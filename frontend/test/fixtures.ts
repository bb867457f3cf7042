import type { Metrics, Model, ModelStatus, RunStatus, TrainingRun } from '../src/types';

export function metrics(over: Partial<Metrics> = {}): Metrics {
  return {
    accuracy: 0.9,
    precision: 0.88,
    recall: 0.86,
    f1: 0.87,
    auc_roc: 0.95,
    loss: 0.3,
    support: 120,
    confusion_matrix: { tp: 50, tn: 58, fp: 7, fn: 5 },
    positive_class: 'Recyclable',
    ...over,
  };
}

export function model(id: string, status: ModelStatus, created: string, over: Partial<Model> = {}): Model {
  return {
    id,
    status,
    created_at: created,
    updated_at: created,
    dataset: 'datasets/20240501T120000Z/',
    training_job: id,
    decisions: [],
    metrics: status === 'training' || status === 'failed' ? undefined : metrics(),
    ...over,
  };
}

export function run(job: string, status: RunStatus, started: string, over: Partial<TrainingRun> = {}): TrainingRun {
  return {
    job,
    model_id: job,
    dataset: 'datasets/20240501T120000Z/',
    status,
    model_status: status === 'in_progress' ? 'training' : status === 'failed' ? 'failed' : 'staged',
    started_at: started,
    updated_at: started,
    ...over,
  };
}

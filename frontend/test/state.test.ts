import { describe, expect, it } from 'vitest';
import { pageFromHash } from '../src/router';
import {
  deploymentInProgress,
  endpointBusy,
  newestStaged,
  rollbackTargets,
  servingModel,
  sortRuns,
  trainingInProgress,
  validEmail,
  versions,
} from '../src/state';
import { model, run } from './fixtures';
import type { DeploymentEvent, Endpoint } from '../src/types';

const ep = (status: Endpoint['status'], serving?: string): Endpoint => ({ name: 'ep', status, serving_model_id: serving });

describe('models', () => {
  const models = [
    model('m3', 'staged', '2024-05-03T00:00:00Z'),
    model('m1', 'superseded', '2024-05-01T00:00:00Z'),
    model('m4', 'staged', '2024-05-04T00:00:00Z'),
    model('m2', 'deployed', '2024-05-02T00:00:00Z'),
  ];

  it('numbers versions oldest first', () => {
    expect(versions(models).map((v) => [v.model.id, v.version])).toEqual([
      ['m1', 1],
      ['m2', 2],
      ['m3', 3],
      ['m4', 4],
    ]);
  });

  it('reviews the newest staged model', () => {
    expect(newestStaged(models)?.id).toBe('m4');
    expect(newestStaged(models.filter((m) => m.status !== 'staged'))).toBeUndefined();
  });

  it('finds the serving model by the endpoint, else by status', () => {
    expect(servingModel(models, ep('InService', 'm1'))?.id).toBe('m1');
    expect(servingModel(models, ep('InService'))?.id).toBe('m2');
    expect(servingModel(models, null)?.id).toBe('m2');
    expect(servingModel([], ep('none'))).toBeUndefined();
  });

  it('sees a deployment in progress from the endpoint or a deploying model', () => {
    expect(endpointBusy(ep('Updating'))).toBe(true);
    expect(endpointBusy(ep('Creating'))).toBe(true);
    expect(endpointBusy(ep('InService'))).toBe(false);
    expect(endpointBusy(ep('none'))).toBe(false);
    expect(endpointBusy(ep('Failed'))).toBe(false);
    expect(deploymentInProgress(models, ep('InService'))).toBe(false);
    expect(deploymentInProgress(models, ep('Updating'))).toBe(true);
    expect(deploymentInProgress([...models, model('m5', 'deploying', '2024-05-05T00:00:00Z')], ep('InService'))).toBe(true);
  });
});

describe('training runs', () => {
  it('sorts newest first and sees one in progress', () => {
    const runs = [run('a', 'completed', '2024-05-01T00:00:00Z'), run('b', 'in_progress', '2024-05-02T00:00:00Z')];
    expect(sortRuns(runs).map((r) => r.job)).toEqual(['b', 'a']);
    expect(trainingInProgress(runs)).toBe(true);
    expect(trainingInProgress([runs[0]])).toBe(false);
  });
});

describe('rollbackTargets', () => {
  it('puts one rollback on the newest event of each superseded model', () => {
    const ev = (at: string, model_id: string, outcome: DeploymentEvent['outcome'], action: DeploymentEvent['action'] = 'accept'): DeploymentEvent => ({
      at,
      action,
      by: 'ana',
      reason: 'r',
      model_id,
      outcome,
    });
    const events = [
      ev('2024-05-03T00:00:00Z', 'm3', 'deployed'),
      ev('2024-05-02T12:00:00Z', 'm1', 'superseded', 'rollback'),
      ev('2024-05-02T00:00:00Z', 'm2', 'rejected', 'reject'),
      ev('2024-05-01T00:00:00Z', 'm1', 'superseded'),
    ];
    const t = rollbackTargets(events);
    expect([...t.keys()]).toEqual(['m1']);
    expect(t.get('m1')).toBe(events[1]);
  });
});

describe('validEmail', () => {
  it('takes plausible addresses', () => {
    for (const e of ['a@b.co', 'first.last+tag@example.com', ' padded@example.org ']) expect(validEmail(e), e).toBe(true);
  });
  it('refuses what the API refuses', () => {
    for (const e of ['', 'plain', '@example.com', 'a@b', 'a@.com', 'a@b.', 'a@b..com', 'a@@b.com', 'a b@c.com', `${'x'.repeat(65)}@b.com`])
      expect(validEmail(e), e).toBe(false);
  });
});

describe('pageFromHash', () => {
  it('reads the page from the hash, the dashboard by default', () => {
    expect(pageFromHash('#/review')).toBe('review');
    expect(pageFromHash('#/Predict')).toBe('predict');
    expect(pageFromHash('#/history?model=m1')).toBe('history');
    expect(pageFromHash('')).toBe('dashboard');
    expect(pageFromHash('#/nope')).toBe('dashboard');
    expect(pageFromHash('#main')).toBe('dashboard');
  });
});

describe('chart y axis', () => {
  it('starts a little under the lowest shown value, at 0 with no data', async () => {
    const { yFloor } = await import('../src/components/MetricChart');
    const pts = [{ label: 'v1', title: '', values: { accuracy: 0.93, f1: 0.81 } }];
    expect(yFloor(pts, ['accuracy'])).toBe(0.8);
    expect(yFloor(pts, ['accuracy', 'f1'])).toBe(0.7);
    expect(yFloor([], ['accuracy'])).toBe(0);
    expect(yFloor([{ label: 'v1', title: '', values: { accuracy: 0.02 } }], ['accuracy'])).toBe(0);
  });
});

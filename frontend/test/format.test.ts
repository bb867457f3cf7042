import { describe, expect, it } from 'vitest';
import {
  actionVerb,
  datasetLabel,
  elapsedMs,
  endpointStatusLabel,
  formatAgo,
  formatDateTime,
  formatDuration,
  formatMetric,
  formatPercent,
  metricDelta,
  runStatusLabel,
  statusLabel,
  statusTone,
} from '../src/format';
import { MODEL_STATUSES } from '../src/types';

describe('formatPercent', () => {
  it('shows fractions as percentages', () => {
    expect(formatPercent(0.9734)).toBe('97.3%');
    expect(formatPercent(1)).toBe('100.0%');
    expect(formatPercent(0)).toBe('0.0%');
    expect(formatPercent(0.5, 0)).toBe('50%');
    expect(formatPercent(0.12345, 2)).toBe('12.35%');
  });
  it('shows a dash for a missing value', () => {
    expect(formatPercent(undefined)).toBe('—');
    expect(formatPercent(Number.NaN)).toBe('—');
  });
  it('formats loss as a number, not a percentage', () => {
    expect(formatMetric('loss', 0.34567)).toBe('0.3457');
    expect(formatMetric('f1', 0.5)).toBe('50.0%');
  });
});

describe('metricDelta', () => {
  it('calls a higher score better, in percentage points', () => {
    const d = metricDelta('accuracy', 0.92, 0.9)!;
    expect(d.verdict).toBe('better');
    expect(d.text).toBe('+2.0 pp');
    expect(d.marker).toBe('▲ better');
  });
  it('calls a lower score worse', () => {
    const d = metricDelta('f1', 0.85, 0.9)!;
    expect(d.verdict).toBe('worse');
    expect(d.text).toBe('−5.0 pp');
    expect(d.marker).toBe('▼ worse');
  });
  it('calls a lower loss better and a higher loss worse', () => {
    expect(metricDelta('loss', 0.2, 0.3)!.verdict).toBe('better');
    expect(metricDelta('loss', 0.2, 0.3)!.text).toBe('−0.1000');
    expect(metricDelta('loss', 0.4, 0.3)!.verdict).toBe('worse');
    expect(metricDelta('loss', 0.4, 0.3)!.marker).toBe('▼ worse');
  });
  it('calls equal values the same', () => {
    const d = metricDelta('auc_roc', 0.9, 0.9)!;
    expect(d.verdict).toBe('same');
    expect(d.marker).toBe('= same');
    expect(d.text).toBe('±0.0 pp');
  });
  it('has nothing to compare without a baseline', () => {
    expect(metricDelta('f1', 0.9, undefined)).toBeNull();
    expect(metricDelta('f1', undefined, 0.9)).toBeNull();
  });
});

describe('durations', () => {
  it('formats seconds, minutes and hours', () => {
    expect(formatDuration(0)).toBe('0 s');
    expect(formatDuration(45_900)).toBe('45 s');
    expect(formatDuration(65_000)).toBe('1 min 05 s');
    expect(formatDuration(3_600_000 + 4 * 60_000 + 30_000)).toBe('1 h 04 min');
    expect(formatDuration(-5)).toBe('0 s');
    expect(formatDuration(Number.NaN)).toBe('0 s');
  });
  it('measures elapsed time from ISO times', () => {
    expect(elapsedMs('2024-05-01T10:00:00Z', '2024-05-01T10:02:30Z')).toBe(150_000);
    expect(elapsedMs('2024-05-01T10:00:00Z', Date.parse('2024-05-01T10:00:10Z'))).toBe(10_000);
    expect(elapsedMs('2024-05-01T10:00:10Z', '2024-05-01T10:00:00Z')).toBe(0);
    expect(elapsedMs('not a time', '2024-05-01T10:00:00Z')).toBe(0);
  });
  it('says how long ago', () => {
    const now = Date.parse('2024-05-01T12:00:00Z');
    expect(formatAgo('2024-05-01T11:59:30Z', now)).toBe('30 s ago');
    expect(formatAgo('2024-05-01T11:57:00Z', now)).toBe('3 min ago');
    expect(formatAgo('2024-05-01T09:00:00Z', now)).toBe('3 h ago');
    expect(formatAgo('2024-04-30T12:00:00Z', now)).toBe('1 day ago');
    expect(formatAgo('2024-04-28T12:00:00Z', now)).toBe('3 days ago');
  });
});

describe('formatDateTime', () => {
  it('formats in the given time zone', () => {
    expect(formatDateTime('2024-05-01T14:03:59Z', 'UTC')).toBe('2024-05-01 14:03');
    expect(formatDateTime('2024-05-01T23:30:00Z', 'Asia/Tokyo')).toBe('2024-05-02 08:30');
  });
  it('shows a dash for a missing or broken time', () => {
    expect(formatDateTime(undefined)).toBe('—');
    expect(formatDateTime('yesterday')).toBe('—');
  });
});

describe('labels', () => {
  it('labels every model status in words', () => {
    for (const s of MODEL_STATUSES) {
      const l = statusLabel(s);
      expect(l).not.toContain('_');
      expect(l[0]).toBe(l[0].toUpperCase());
    }
    expect(statusLabel('deploy_failed')).toBe('Deploy failed');
    expect(statusLabel('something_new')).toBe('Something new');
  });
  it('labels run and endpoint statuses', () => {
    expect(runStatusLabel('in_progress')).toBe('In progress');
    expect(endpointStatusLabel('InService')).toBe('In service');
    expect(endpointStatusLabel('none')).toBe('No endpoint');
    expect(endpointStatusLabel('UpdateRollbackFailed')).toBe('Update rollback failed');
  });
  it('gives statuses tones', () => {
    expect(statusTone('deployed')).toBe('ok');
    expect(statusTone('deploy_failed')).toBe('bad');
    expect(statusTone('Updating')).toBe('busy');
    expect(statusTone('staged')).toBe('wait');
    expect(statusTone('retired')).toBe('muted');
  });
  it('words decisions', () => {
    expect(actionVerb('accept')).toBe('accepted');
    expect(actionVerb('rollback')).toBe('rolled back to');
  });
  it('names data sets by their stamp', () => {
    expect(datasetLabel('datasets/20240501T120000Z/')).toBe('20240501T120000Z');
    expect(datasetLabel('s3://bucket/datasets/20240501T120000Z')).toBe('20240501T120000Z');
    expect(datasetLabel(undefined)).toBe('—');
  });
});

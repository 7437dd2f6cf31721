// One log line per pod state change, except pods adopted as they were at a restart (no backend
// call, nothing changed): those go to debug and are counted for the ready line's summary.
import type { PodStatus } from '@shunt/core';
import type { AgentLogger } from './log';
import { createAgentMetrics } from './metrics';
import { PodStateTracker } from './pod-states';

function recordingLog() {
  const lines: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (fields: object, msg: string) => void lines.push({ level, fields: fields as Record<string, unknown>, msg });
  const log = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log } as unknown as AgentLogger;
  return { log, lines };
}

const pod = (name: string) => ({ uid: `uid-${name}`, namespace: 'shop', name });

test('adopted-unchanged pods are logged at debug and counted; real changes stay info/warn lines', () => {
  const { log, lines } = recordingLog();
  const tracker = new PodStateTracker(log, createAgentMetrics({ defaultMetrics: false }));
  const statuses: PodStatus[] = [
    { pod: pod('kept'), state: 'enrolled', at: 1, unchanged: true },
    { pod: pod('new'), state: 'enrolled', at: 1 },
    { pod: pod('bad'), state: 'failed', reason: 'no listener', attempts: 1, at: 1 },
    // Back from rejected to what is installed: a change of state, logged as one.
    { pod: pod('fixed'), state: 'rejected', reason: 'bad annotation', at: 1 },
    { pod: pod('fixed'), state: 'enrolled', at: 2, unchanged: true },
  ];
  for (const s of statuses) tracker.onStatus(s);
  expect(lines.map((l) => [l.level, l.fields['pod'], l.fields['state']])).toEqual([
    ['debug', 'shop/kept', 'enrolled'],
    ['info', 'shop/new', 'enrolled'],
    ['warn', 'shop/bad', 'failed'],
    ['warn', 'shop/fixed', 'rejected'],
    ['info', 'shop/fixed', 'enrolled'],
  ]);
  expect(tracker.adoptedUnchanged()).toBe(1);
  expect(tracker.states().get('uid-kept')).toEqual({ state: 'enrolled', reason: undefined });
});

// The ambient demo/bench modes for real: runDemo with ambient pods, `direct` (the ztunnel stand-in
// holds both pods, no redirect) and the agent's iptables mode (the real agent with --profile
// istio-ambient and --zds-socket, the stand-in connected to it). The path is read from the
// stand-in's log: direct never reaches it, the agent path crosses both pods' ztunnel.
import { ambientDirectMode, runDemo } from '@shunt/testbed';
import { agentMode } from './agent-mode';

it('direct bypasses ztunnel; agent-iptables crosses both legs with the original destination', async () => {
  const lines: string[] = [];
  const results = await runDemo({ mesh: 'ambient', modes: [ambientDirectMode(), agentMode('iptables', { profile: 'istio-ambient' })], requests: 3, out: (l) => lines.push(l), capabilities: { source: 'test', rows: [] } });
  const [direct, ipt] = results;
  expect(direct).toMatchObject({ mode: 'direct', ok: 3, failed: 0, viaProxy: false });
  expect(direct!.ztunnel).toEqual({ client: [], server: [] });
  expect(ipt).toMatchObject({ mode: 'agent-iptables', ok: 3, failed: 0, viaProxy: true });
  expect(ipt!.ztunnel!.client).toHaveLength(3);
  expect(ipt!.ztunnel!.server).toHaveLength(3);
  for (const c of ipt!.ztunnel!.client) expect(c).toMatchObject({ leg: 'outbound', how: 'SO_ORIGINAL_DST', origDst: { port: 8080 }, via: 'hbone' });
  for (const s of ipt!.ztunnel!.server) expect(s).toMatchObject({ leg: 'hbone', local: { port: 15008 }, origDst: { port: 8080 } });
  expect(lines.join('\n')).toMatch(/client's ztunnel \(outbound :15001\) logged 3 connections/);
}, 180_000);

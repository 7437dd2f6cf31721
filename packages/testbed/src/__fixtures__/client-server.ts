// The sidecar tests' testbed: pods client and server (sidecar mesh), an HTTP responder on the
// server's :8080 answering "from-server"; `opts` adds TestbedOptions (e.g. the access log off).
import { Testbed, type TestbedOptions } from '../index';

export async function clientServerTestbed(opts: Omit<TestbedOptions, 'pods'> = {}): Promise<Testbed> {
  const tb = await Testbed.create({
    ...opts,
    pods: [
      { name: 'client', mesh: 'sidecar' },
      { name: 'server', mesh: 'sidecar' },
    ],
  });
  await tb.startHttpServer('server', { port: 8080, body: 'from-server' });
  return tb;
}

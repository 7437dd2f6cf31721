import { AddressPlan, blockOfRunId, canonicalIpv6 } from './addressing';

test('blocks partition 198.18.0.0/15 and 2001:db8::/32 by run id', () => {
  expect(blockOfRunId('0000')).toBe(0);
  expect(blockOfRunId('01ff')).toBe(511);
  expect(() => blockOfRunId('xyz')).toThrow(/invalid run id/);
  const last = new AddressPlan(511);
  expect(last.cidrV4).toBe('198.19.255.0/24');
  expect(last.node(2).podCidrV4).toBe('198.19.255.128/26');
  expect(last.link(1, 2).v4).toEqual(['198.19.255.201', '198.19.255.202']);
  const first = new AddressPlan(0);
  expect(first.node(0)).toMatchObject({ gatewayV4: '198.18.0.1', gatewayV6: '2001:db8:0:0::1'.replace(':0:0::', '::') });
  expect(first.pod(1, 0)).toEqual({ v4: '198.18.0.66', v6: '2001:db8:0:1::2' });
  expect(new AddressPlan(0x1c6).pod(0, 1).v6).toBe('2001:db8:1c6::3');
  expect(() => first.pod(0, 60)).toThrow(/outside/);
  expect(() => new AddressPlan(512)).toThrow(/outside/);
});

test('IPv6 addresses are printed the way the kernel prints them', () => {
  expect(canonicalIpv6('2001:db8:1c6:0::2')).toBe('2001:db8:1c6::2');
  expect(canonicalIpv6('2001:db8:0:0:0:0:0:1')).toBe('2001:db8::1');
});

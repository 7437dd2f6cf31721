import { canonicalCidrs, formatCidr, formatIp, parseCidr, parseIp, parsePort } from './netaddr';

describe('parseIp (Go netip.ParseAddr rules)', () => {
  it.each([
    ['10.0.0.1', '10.0.0.1'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['::', '::'],
    ['::1', '::1'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
  ])('%s → %s', (text, canonical) => {
    const r = parseIp(text);
    expect(r.ok).toBe(true);
    if (r.ok) expect(formatIp(r.value)).toBe(canonical);
  });

  it.each(['', 'abc', '10.0.0', '10.0.0.0.1', '10.0.0.256', '10.01.0.1', ' 10.0.0.1', '10.0.0.1 ', '1::2::3', ':1::', '12345::', 'fe80::1%eth0', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '::ffff:1.2.3'])(
    'rejects %j',
    (text) => expect(parseIp(text).ok).toBe(false),
  );
});

describe('parseCidr (Go netip.ParsePrefix rules, canonicalised)', () => {
  it.each([
    ['10.0.0.0/8', '10.0.0.0/8', 4],
    ['10.1.2.3/8', '10.0.0.0/8', 4],
    ['0.0.0.0/0', '0.0.0.0/0', 4],
    ['192.168.1.7/32', '192.168.1.7/32', 4],
    ['2001:db8::/32', '2001:db8::/32', 6],
    ['2001:DB8:1:2::5/48', '2001:db8:1::/48', 6],
    ['::/0', '::/0', 6],
    ['fd00::1/128', 'fd00::1/128', 6],
  ])('%s → %s', (text, canonical, family) => {
    const r = parseCidr(text);
    expect(r).toMatchObject({ ok: true });
    if (r.ok) {
      expect(formatCidr(r.value)).toBe(canonical);
      expect(r.value.family).toBe(family);
    }
  });

  it.each([
    ['10.0.0.0/33', /out of range/],
    ['2001:db8::/129', /out of range/],
    ['10.0.0.0', /no '\/'/],
    ['10.0.0.0/', /bad bits/],
    ['10.0.0.0/08', /bad bits/],
    ['10.0.0.0/+8', /bad bits/],
    ['10.0.0.0/-1', /bad bits/],
    ['abc/8', /bad address/],
    [' 10.0.0.0/8', /bad address/],
    ['fe80::%eth0/64', /zones/],
    ['*', /no '\/'/],
  ])('rejects %j', (text, why) => {
    const r = parseCidr(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(why);
  });

  it('sorts v4 before v6 and drops duplicates', () => {
    const list = ['2001:db8::/32', '10.0.0.0/8', '10.1.0.0/8', '1.0.0.0/8'].map((t) => {
      const r = parseCidr(t);
      if (!r.ok) throw new Error(r.error);
      return r.value;
    });
    expect(canonicalCidrs(list).map(formatCidr)).toEqual(['1.0.0.0/8', '10.0.0.0/8', '2001:db8::/32']);
  });
});

describe('parsePort (strconv.ParseUint(trim(s), 10, 16))', () => {
  it.each([['80', 80], [' 8080 ', 8080], ['0', 0], ['65535', 65535], ['080', 80]])('%j → %d', (t, v) =>
    expect(parsePort(t)).toEqual({ ok: true, value: v }),
  );
  it.each(['65536', '70000', '-1', '+80', 'abc', '', '8_0', '0x50', '80 81'])('rejects %j', (t) => expect(parsePort(t).ok).toBe(false));
});

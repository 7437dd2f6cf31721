// Reference data: the in-pod rule lines of istio/istio cni/pkg/iptables/testdata/*.golden at
// 86c9f01fd735 (2026-08-22), per table, v4 part (v6 part where the golden is dual stack), copied
// as written there (Apache-2.0, Istio Authors). Only used by render-ambient.test.ts, which spells
// them the way iptables-save does and compares them with our rules chain by chain.
// The ipv6 goldens use the test's probe address e9ac:1e77:90ca:399f:4d6d:ece2:2f9b:3164
// (constructTestConfig); istio-cni's default, which we use, is fd16:9254:7127:1337:ffff:ffff:ffff:ffff.

export type IstioTables = Partial<Record<'mangle' | 'nat' | 'raw', string[]>>;

const MANGLE = [
  '-A PREROUTING -j ISTIO_PRERT',
  '-A OUTPUT -j ISTIO_OUTPUT',
  '-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff',
  '-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff',
];
const RAW = [
  '-A PREROUTING -j ISTIO_PRERT',
  '-A OUTPUT -j ISTIO_OUTPUT',
  '-A ISTIO_OUTPUT -p udp -m mark --mark 0x539/0xfff -m udp --dport 53 -j CT --zone 1',
  '-A ISTIO_PRERT -p udp -m mark ! --mark 0x539/0xfff -m udp --sport 53 -j CT --zone 1',
];
const natV4 = (dns: boolean) => [
  '-A OUTPUT -j ISTIO_OUTPUT',
  '-A PREROUTING -j ISTIO_PRERT',
  '-A ISTIO_PRERT -s 169.254.7.127 -p tcp -m tcp -j ACCEPT',
  '-A ISTIO_OUTPUT -d 169.254.7.127 -p tcp -m tcp -j ACCEPT',
  '-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006',
  ...(dns
    ? [
        '-A ISTIO_OUTPUT ! -o lo -p udp -m mark ! --mark 0x539/0xfff -m udp --dport 53 -j REDIRECT --to-port 15053',
        '-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp --dport 53 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15053',
      ]
    : []),
  '-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT',
  '-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT',
  '-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001',
];
const natV6 = (dns: boolean) => [
  '-A OUTPUT -j ISTIO_OUTPUT',
  '-A PREROUTING -j ISTIO_PRERT',
  '-A ISTIO_PRERT -s e9ac:1e77:90ca:399f:4d6d:ece2:2f9b:3164 -p tcp -m tcp -j ACCEPT',
  '-A ISTIO_OUTPUT -d e9ac:1e77:90ca:399f:4d6d:ece2:2f9b:3164 -p tcp -m tcp -j ACCEPT',
  '-A ISTIO_PRERT ! -d ::1/128 -p tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006',
  ...(dns
    ? [
        '-A ISTIO_OUTPUT ! -o lo -p udp -m mark ! --mark 0x539/0xfff -m udp --dport 53 -j REDIRECT --to-port 15053',
        '-A ISTIO_OUTPUT ! -d ::1/128 -p tcp --dport 53 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15053',
      ]
    : []),
  '-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT',
  '-A ISTIO_OUTPUT ! -d ::1/128 -o lo -j ACCEPT',
  '-A ISTIO_OUTPUT ! -d ::1/128 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001',
];

export const ISTIO_CNI_GOLDENS: Record<string, { v4: IstioTables; v6?: IstioTables }> = {
  'default.golden': { v4: { mangle: MANGLE, nat: natV4(true), raw: RAW } },
  'dns_pod_enabled_and_off_globally.golden': { v4: { mangle: MANGLE, nat: natV4(true), raw: RAW } },
  'dns_pod_disabled_and_on_globally.golden': { v4: { mangle: MANGLE, nat: natV4(false) } },
  'default_ipv6.golden': { v4: { mangle: MANGLE, nat: natV4(true), raw: RAW }, v6: { mangle: MANGLE, nat: natV6(true), raw: RAW } },
  'dns_pod_enabled_and_off_globally_ipv6.golden': { v4: { mangle: MANGLE, nat: natV4(true), raw: RAW }, v6: { mangle: MANGLE, nat: natV6(true), raw: RAW } },
  'dns_pod_disabled_and_on_globally_ipv6.golden': { v4: { mangle: MANGLE, nat: natV4(false) }, v6: { mangle: MANGLE, nat: natV6(false) } },
  'ingress.golden': {
    v4: {
      mangle: MANGLE,
      nat: [
        '-A OUTPUT -j ISTIO_OUTPUT',
        '-A PREROUTING -j ISTIO_PRERT',
        '-A ISTIO_OUTPUT -d 169.254.7.127 -p tcp -m tcp -j ACCEPT',
        '-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT',
        '-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT',
        '-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001',
      ],
    },
  },
};

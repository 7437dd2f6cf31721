import { splitPerfScript, usPerConn } from './perf-split';

// `perf script -F comm,pid,cgroup,ip,sym` of five samples: a psock chain under a BPF program, a
// BPF map walk, a user-space haproxy frame, another run's cgroup (not counted), a kworker (counted).
const SCRIPT = `haproxy 4242 /shunt-tb-ab12/node0/c0
\tffffffff81a00001 _raw_spin_lock_bh
\tffffffff81a00002 sock_hash_update_common
\tffffffff81a00003 bpf_prog_442f3423f5352aec_shunt_sockops
\tffffffff81a00004 tcp_init_transfer

haproxy 4242 /shunt-tb-ab12/node0/s0
\tffffffff81a00011 lookup_nulls_elem_raw
\tffffffff81a00012 bpf_prog_cda35bdd775d14aa_shunt_getpeername4
\tffffffff81a00013 inet_getname

haproxy 4242 /shunt-tb-ab12/node0/s0
\t55d0a0001000 h1_process
\t55d0a0002000 run_poll_loop

node 777 /other/helper
\tffffffff81a00021 tcp_sendmsg

kworker/1:2-eve 99 /
\tffffffff81a00031 __slab_free
\tffffffff81a00032 sk_psock_destroy
\tffffffff81a00033 process_one_work
`;

it('splits samples of the run cgroups and kernel threads by the first matching symbol group', () => {
  const s = splitPerfScript(SCRIPT, /^\/shunt-tb-ab12\//);
  expect(s.samples).toBe(4);
  expect(s.groups).toEqual({ 'psock/sockmap': 2, 'bpf progs+maps': 1, 'user haproxy': 1 });
  expect(s.byComm).toEqual({ haproxy: 3, kworker: 1 });
});

it('a sample with only TCP frames is kernel other; µs per connection from samples, Hz and connections', () => {
  const s = splitPerfScript(SCRIPT.replace('/other/helper', '/shunt-tb-ab12/node0/c0'), /^\/shunt-tb-ab12\//);
  expect(s.groups['kernel other']).toBe(1);
  expect(usPerConn(999, 999, 1000)).toBeCloseTo(1000);
  expect(usPerConn(10, 999, 0)).toBeNaN();
});

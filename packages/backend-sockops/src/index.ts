// @shunt/backend-sockops: Merbridge-style redirect: cgroup connect4/6 + getsockopt(SO_ORIGINAL_DST) + sockops + sk_msg socket splicing.
export {};

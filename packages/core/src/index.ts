// @shunt/core: the contract every backend and the agent share.
export * from './types';

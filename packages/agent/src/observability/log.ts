// Structured JSON logs (pino) on stdout; the level names match the chart's logLevel values.
import pino from 'pino';
import type { Logger } from '@shunt/core';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type AgentLogger = Logger & { child(bindings: object): AgentLogger; flush?: () => void };

export function createLogger(level: string, destination?: NodeJS.WritableStream): AgentLogger {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new Error(`log level ${JSON.stringify(level)} is not one of ${LOG_LEVELS.join(', ')}`);
  }
  const opts: pino.LoggerOptions = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return (destination ? pino(opts, destination as pino.DestinationStream) : pino(opts, pino.destination({ sync: true }))) as unknown as AgentLogger;
}

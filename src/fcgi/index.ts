/** The FastCGI codec: constants, incremental parser, record and params writers. No I/O. */
export * from './constants.js';
export * from './parser.js';
export * from './records.js';
export * from './params.js';

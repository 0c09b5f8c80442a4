/**
 * FastCGI 1.0 constants (https://fastcgi-archives.github.io/FastCGI_Specification.html, section 8),
 * plus corral's own record types for the service <-> worker pipe (see PROTOCOL.md).
 */

/** Every record starts with this version byte. */
export const FCGI_VERSION_1 = 1;
/** Bytes in a record header. */
export const HEADER_LEN = 8;
/** Largest content of one record (contentLength is 16 bits). */
export const MAX_CONTENT = 0xffff;
/** Request id 0 is the management id (GET_VALUES, UNKNOWN_TYPE, corral's READY/PING). */
export const NULL_REQUEST_ID = 0;
/** The FastCGI spec's FCGI_LISTENSOCK_FILENO: a listening socket handed to the app as fd 0. */
export const LISTENSOCK_FILENO = 0;

/** Record types of the spec (1..11) and corral's extension types (0xC0..0xC4, service <-> worker only). */
export const RecordType = {
  BEGIN_REQUEST: 1,
  ABORT_REQUEST: 2,
  END_REQUEST: 3,
  PARAMS: 4,
  STDIN: 5,
  STDOUT: 6,
  STDERR: 7,
  DATA: 8,
  GET_VALUES: 9,
  GET_VALUES_RESULT: 10,
  UNKNOWN_TYPE: 11,
  // corral extensions: types the spec leaves unassigned (FCGI_MAXTYPE is 11).
  CORRAL_READY: 0xc0,
  CORRAL_WINDOW: 0xc1,
  CORRAL_PING: 0xc2,
  CORRAL_PONG: 0xc3,
  CORRAL_FATAL: 0xc4,
  // Direct data plane: a worker's figures and finished requests, batched (PROTOCOL.md, "Direct mode").
  CORRAL_REPORT: 0xc5,
  // Direct data plane, service -> a draining worker before stdin EOF: the handoff socket of a live
  // worker, which takes over its kept connections (PROTOCOL.md, "Handing off kept connections").
  CORRAL_HANDOFF: 0xc6,
} as const;
export type RecordTypeCode = (typeof RecordType)[keyof typeof RecordType];

/** Highest record type the spec defines; a front sending anything above gets UNKNOWN_TYPE. */
export const FCGI_MAXTYPE = RecordType.UNKNOWN_TYPE;

/** Roles in BEGIN_REQUEST. corral serves RESPONDER only and answers others with UNKNOWN_ROLE. */
export const Role = { RESPONDER: 1, AUTHORIZER: 2, FILTER: 3 } as const;

/** Flags in BEGIN_REQUEST. */
export const FCGI_KEEP_CONN = 1;

/** protocolStatus in END_REQUEST. */
export const ProtocolStatus = {
  REQUEST_COMPLETE: 0,
  CANT_MPX_CONN: 1,
  OVERLOADED: 2,
  UNKNOWN_ROLE: 3,
} as const;

/** Variable names a client may ask for with GET_VALUES. */
export const ManagementVar = {
  MAX_CONNS: 'FCGI_MAX_CONNS',
  MAX_REQS: 'FCGI_MAX_REQS',
  MPXS_CONNS: 'FCGI_MPXS_CONNS',
} as const;

/** Record types a front (web server) may send to an application. */
export function isFrontInputType(type: number): boolean {
  return (
    type === RecordType.BEGIN_REQUEST ||
    type === RecordType.ABORT_REQUEST ||
    type === RecordType.PARAMS ||
    type === RecordType.STDIN ||
    type === RecordType.DATA ||
    type === RecordType.GET_VALUES
  );
}

/** Human name of a record type, for logs and test output. */
export function recordTypeName(type: number): string {
  for (const [name, code] of Object.entries(RecordType)) if (code === type) return name;
  return `TYPE_${type}`;
}

/**
 * What the relay answers itself, never asking the service: FCGI_GET_VALUES (as one IIS instance,
 * it takes one connection and one request at a time, unmultiplexed, like wfastcgi) and the 502 a
 * request gets when the service cannot be reached. Pure functions over Buffers.
 */
import { ManagementVar, ProtocolStatus, RecordType } from '../fcgi/constants.js';
import { getValuesResult } from '../fcgi/params.js';
import { encodeEndRequest, encodeRecord, frameStream } from '../fcgi/records.js';
import { CorralError } from '../errors.js';
import { errorResponse } from '../front/error-page.js';

const VALUES: Readonly<Record<string, string>> = {
  [ManagementVar.MAX_CONNS]: '1',
  [ManagementVar.MAX_REQS]: '1',
  [ManagementVar.MPXS_CONNS]: '0',
};

/** The GET_VALUES_RESULT record for a GET_VALUES content, or null if the content is malformed. */
export function getValuesAnswer(content: Buffer): Buffer | null {
  const answer = getValuesResult(content, VALUES);
  return answer.ok ? answer.record : null;
}

/**
 * How a request ends when the service is gone: a whole 502 page if no response byte was sent yet,
 * else END_REQUEST with appStatus 1 (the response is cut short). Never FCGI_STDERR: under IIS's
 * default stderrMode any STDERR byte becomes IIS's own 500 page.
 */
export function gatewayFailure(requestId: number, responseStarted: boolean, message: string): Buffer {
  if (responseStarted) return encodeEndRequest(requestId, 1, ProtocolStatus.REQUEST_COMPLETE);
  const page = errorResponse(new CorralError('CORRAL_SERVICE_UNREACHABLE', message), false);
  return Buffer.concat([
    ...frameStream(RecordType.STDOUT, requestId, page),
    encodeRecord(RecordType.STDOUT, requestId),
    encodeEndRequest(requestId, 0, ProtocolStatus.REQUEST_COMPLETE),
  ]);
}

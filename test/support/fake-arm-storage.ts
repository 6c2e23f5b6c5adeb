// Blob Storage through the same transport as the fake ARM: requests for the sandbox's Azurite go to
// Azurite over HTTP (the SDK's own default client), except those a test makes fail the way Azure's
// storage service does (409 BlobArchived or PendingCopyOperation, 403 CannotVerifyCopySource for a
// source behind a firewall), with Azure's XML error body and x-ms-error-code header. Requests for
// any other storage host are recorded and refused, so a test can see which host a cloud uses.
import { createDefaultHttpClient, createHttpHeaders, type HttpClient, type PipelineRequest, type PipelineResponse } from '@azure/core-rest-pipeline';
import type { FakeArm, FakeExtension } from './fake-arm';

interface StorageFault {
  method?: string;
  path: RegExp;
  status: number;
  code: string;
  message: string;
  times: number;
  /** After this fault, the blob reads as a copy still pending (x-ms-copy-status) this many times. */
  pendingReads?: number;
}

export class FakeStorage implements FakeExtension {
  private readonly azurite: HttpClient = createDefaultHttpClient();
  private readonly faults: StorageFault[] = [];
  private pending?: { path: RegExp; left: number };
  /** Hosts of storage requests that did not go to Azurite. */
  readonly otherHosts: string[] = [];

  constructor(arm: FakeArm) {
    arm.extensions.push(this);
  }

  /** The next `times` requests matching answer `status` with this storage error code. */
  fail(f: Omit<StorageFault, 'times'> & { times?: number }): void {
    this.faults.push({ times: 1, ...f });
  }

  forward(request: PipelineRequest): Promise<PipelineResponse> | undefined {
    const url = new URL(request.url);
    const azurite = url.hostname === '127.0.0.1' || url.hostname === 'localhost';
    if (!azurite && !/\.blob\.core\.(windows\.net|usgovcloudapi\.net|chinacloudapi\.cn)$/.test(url.hostname)) return undefined;
    const reply = (status: number, code: string, message: string): PipelineResponse => ({
      request,
      status,
      headers: createHttpHeaders({ 'content-type': 'application/xml', 'x-ms-error-code': code, 'x-ms-request-id': 'fake-storage' }),
      bodyAsText: `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}\nRequestId:fake-storage\nTime:${new Date().toISOString()}</Message></Error>`,
    });
    if (!azurite) {
      this.otherHosts.push(url.hostname);
      return Promise.resolve(reply(403, 'AuthorizationFailure', 'This request is not authorized to perform this operation.'));
    }
    const path = decodeURIComponent(url.pathname);
    if (request.method === 'HEAD' && this.pending && this.pending.left > 0 && this.pending.path.test(path)) {
      this.pending.left -= 1;
      return Promise.resolve({
        request,
        status: 200,
        headers: createHttpHeaders({ 'x-ms-copy-status': 'pending', 'x-ms-copy-progress': `${512 * (3 - this.pending.left)}/2048`, 'x-ms-blob-type': 'BlockBlob', 'content-length': '0', 'x-ms-request-id': 'fake-storage' }),
      });
    }
    const fault = this.faults.find((f) => f.times > 0 && f.path.test(path) && (!f.method || f.method === request.method));
    if (fault) {
      fault.times -= 1;
      if (fault.pendingReads) this.pending = { path: fault.path, left: fault.pendingReads };
      return Promise.resolve(reply(fault.status, fault.code, fault.message));
    }
    return this.azurite.sendRequest(request);
  }
}

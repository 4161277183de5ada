import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isLoopbackHost, plaintextExposureWarning } from '../../src/api/server-tls.js';

describe('the plaintext exposure warning', () => {
  test('loopback addresses are not exposed; any other address is', () => {
    for (const host of ['127.0.0.1', '127.3.2.1', 'localhost', 'LOCALHOST', '::1', '::ffff:127.0.0.1']) {
      assert.equal(isLoopbackHost(host), true, host);
    }
    for (const host of ['0.0.0.0', '::', '10.0.0.5', 'kvs2.example.com', '128.0.0.1', '127.0.0.1.example.com']) {
      assert.equal(isLoopbackHost(host), false, host);
    }
  });

  test('only plaintext on a non-loopback address warns, naming the address and the TLS flags', () => {
    assert.equal(plaintextExposureWarning('127.0.0.1', 50051, false), null);
    assert.equal(plaintextExposureWarning('0.0.0.0', 50051, true), null);
    const warning = plaintextExposureWarning('0.0.0.0', 50051, false) ?? assert.fail('no warning');
    assert.match(warning, /0\.0\.0\.0:50051/);
    assert.match(warning, /--tls-cert and --tls-key/);
    assert.doesNotMatch(warning, /\n/);
  });
});

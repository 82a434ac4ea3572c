// The smallest extension: answers every request under its virtual directory.
//   isapi pack examples/hello.ts && isapi serve dist/hello   →   curl http://127.0.0.1:8080/hello/
import { SimpleExtension, type ECB } from 'node-isapi';

class Hello extends SimpleExtension {
  HttpExtensionProc(ecb: ECB) {
    const body = 'Hello from TypeScript\n';
    ecb.SendResponseHeaders('200 OK', {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
    });
    ecb.WriteClient(body);
    // Returning ends the request (HSE_STATUS_SUCCESS).
  }
}

export function __ExtensionFactory__() {
  return new Hello();
}

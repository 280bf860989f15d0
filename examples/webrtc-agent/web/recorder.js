// AudioWorklet of webrtc-agent's page: hands each 128-frame block of its (stereo) input to the
// page, which keeps them until the recording is long enough.
class Recorder extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      // Copies: the engine reuses its arrays. A missing channel is silence.
      const left = new Float32Array(input[0]);
      const right = input.length > 1 ? new Float32Array(input[1]) : new Float32Array(left.length);
      this.port.postMessage([left, right], [left.buffer, right.buffer]);
    }
    return true;
  }
}

registerProcessor('recorder', Recorder);

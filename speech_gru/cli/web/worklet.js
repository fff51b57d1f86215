// AudioWorklet: the microphone at the context's rate in, 16 kHz mono frames out.
//
// Channels are averaged, then resampled by a windowed-sinc low-pass (cut-off just under
// 8 kHz, so nothing above it folds back into the band the model hears) evaluated at each
// output instant. Every `frameSamples` output samples are posted to the page as a
// Float32Array with their RMS and peak, for the level meter.

const TABLE_STEPS = 256; // kernel table entries per input sample

class Pcm16k extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.outRate = opts.targetRate || 16000;
    this.frameSamples = opts.frameSamples || 1600;
    this.ratio = sampleRate / this.outRate; // input samples per output sample
    this.frame = new Float32Array(this.frameSamples);
    this.filled = 0;
    this.passThrough = Math.abs(this.ratio - 1) < 1e-9;
    if (!this.passThrough) {
      // half-width in input samples; cut-off in cycles per input sample
      this.half = Math.ceil(16 * Math.max(1, this.ratio));
      const cutoff = 0.5 * Math.min(1, 1 / this.ratio) * 0.95;
      const size = 2 * this.half * TABLE_STEPS + 1;
      this.kernel = new Float32Array(size);
      for (let i = 0; i < size; i++) {
        const x = i / TABLE_STEPS - this.half;
        const hann = 0.5 + 0.5 * Math.cos((Math.PI * x) / this.half);
        const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
        this.kernel[i] = sinc * hann;
      }
      // input history: buffer[0] is input sample number `start`; zeros before the first
      this.buffer = new Float32Array(this.half);
      this.start = -this.half;
      this.next = 0; // input position of the next output sample
    }
  }

  emit(value) {
    this.frame[this.filled++] = value;
    if (this.filled === this.frameSamples) {
      let sum = 0;
      let peak = 0;
      for (const v of this.frame) {
        sum += v * v;
        peak = Math.max(peak, Math.abs(v));
      }
      const rms = Math.sqrt(sum / this.frameSamples);
      const samples = this.frame;
      this.port.postMessage({ samples, rms, peak }, [samples.buffer]);
      this.frame = new Float32Array(this.frameSamples);
      this.filled = 0;
    }
  }

  resample(mono) {
    const joined = new Float32Array(this.buffer.length + mono.length);
    joined.set(this.buffer);
    joined.set(mono, this.buffer.length);
    const end = this.start + joined.length; // one past the last input sample
    while (this.next + this.half < end) {
      const first = Math.ceil(this.next - this.half);
      const last = Math.floor(this.next + this.half);
      let acc = 0;
      let weight = 0;
      for (let n = first; n <= last; n++) {
        const k = this.kernel[Math.round((this.next - n + this.half) * TABLE_STEPS)];
        acc += joined[n - this.start] * k;
        weight += k;
      }
      this.emit(weight > 0 ? acc / weight : 0);
      this.next += this.ratio;
    }
    const keep = Math.max(0, Math.floor(this.next - this.half) - this.start);
    this.buffer = joined.slice(keep);
    this.start += keep;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) {
      return true; // no microphone data in this quantum
    }
    let mono = input[0];
    if (input.length > 1) {
      mono = new Float32Array(input[0].length);
      for (const channel of input) {
        for (let i = 0; i < channel.length; i++) mono[i] += channel[i] / input.length;
      }
    }
    if (this.passThrough) {
      for (const v of mono) this.emit(v);
    } else {
      this.resample(mono);
    }
    return true;
  }
}

registerProcessor("pcm-16k", Pcm16k);

// webrtc-agent's page: signalling over /ws, one RTCPeerConnection, the microphone out, the
// agent's speech in (see ../src/server.rs for the messages).
//
// Query parameters:
//   autostart=1      connect at once, without the Start button
//   record=SECONDS   once connected, record the microphone (left) and the agent (right) for
//                    that long, then upload a 16 kHz stereo WAV to POST /received
'use strict';

const params = new URLSearchParams(location.search);
const recordSeconds = Number(params.get('record') || 0);
const RECORD_RATE = 16000;

const startButton = document.getElementById('start');
const stopButton = document.getElementById('stop');
const stateText = document.getElementById('state');
const remoteAudio = document.getElementById('remote');
const captionList = document.getElementById('captions');
const logText = document.getElementById('log');

let ws = null;
let pc = null;
let transceiver = null;
let microphone = null;
let remoteStream = null;
let recording = false;

function log(text) {
  const stamp = (performance.now() / 1000).toFixed(2);
  logText.textContent += `[${stamp}] ${text}\n`;
  logText.scrollTop = logText.scrollHeight;
  console.log(text);
}

function setState(text) {
  stateText.textContent = text;
  document.title = `agent: ${text}`;
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function addCaption(text) {
  const item = document.createElement('li');
  const speaker = text.split(':', 1)[0];
  item.className = speaker;
  item.textContent = text;
  captionList.appendChild(item);
}

async function start() {
  startButton.disabled = true;
  stopButton.disabled = false;
  setState('connecting');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  ws = new WebSocket(`${scheme}://${location.host}/ws`);
  // No STUN or TURN: the server is on this machine (or this network).
  pc = new RTCPeerConnection({ iceServers: [] });
  pc.onicecandidate = (event) => {
    if (event.candidate && event.candidate.candidate) {
      send({
        type: 'ice',
        candidate: event.candidate.candidate,
        sdpMLineIndex: event.candidate.sdpMLineIndex,
      });
    }
  };
  pc.ontrack = (event) => {
    remoteStream = event.streams[0] || new MediaStream([event.track]);
    // Chrome feeds a remote track to WebAudio only while a media element plays it.
    remoteAudio.srcObject = remoteStream;
    remoteAudio.play().catch((error) => log(`cannot play the agent: ${error}`));
    log('receiving the agent');
  };
  pc.onconnectionstatechange = () => {
    setState(pc.connectionState);
    log(`connection: ${pc.connectionState}`);
    if (pc.connectionState === 'connected') {
      openMicrophone().catch((error) => {
        log(`microphone: ${error}`);
        stop();
      });
    } else if (pc.connectionState === 'failed') {
      stop();
    }
  };
  ws.onmessage = (event) => {
    handle(JSON.parse(event.data)).catch((error) => log(`error: ${error}`));
  };
  ws.onclose = () => {
    log('signalling closed');
    stop();
  };
}

async function handle(message) {
  switch (message.type) {
    case 'offer': {
      await pc.setRemoteDescription({ type: 'offer', sdp: message.sdp });
      transceiver = pc.getTransceivers().find((t) => t.receiver.track.kind === 'audio');
      // Send and receive; the microphone track is added once connected (no renegotiation).
      transceiver.direction = 'sendrecv';
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      send({ type: 'answer', sdp: answer.sdp });
      break;
    }
    case 'ice':
      await pc.addIceCandidate({ candidate: message.candidate, sdpMLineIndex: message.sdpMLineIndex });
      break;
    case 'caption':
      addCaption(message.text);
      break;
    case 'decision':
      log(`${message.kind} ${message.detail}`);
      break;
    case 'error':
      log(`server: ${message.message}`);
      setState(`error: ${message.message}`);
      break;
    default:
      log(`unknown message: ${JSON.stringify(message)}`);
  }
}

async function openMicrophone() {
  if (microphone) return;
  microphone = await navigator.mediaDevices.getUserMedia({ audio: true });
  const track = microphone.getAudioTracks()[0];
  await transceiver.sender.replaceTrack(track);
  log(`microphone: ${track.label}`);
  if (recordSeconds > 0 && !recording) {
    recording = true;
    record(recordSeconds).catch((error) => log(`recording: ${error}`));
  }
}

// Records the microphone (left) and the agent (right) through one AudioContext, so both
// channels share a time line, then uploads a 16 kHz stereo WAV.
async function record(seconds) {
  const context = new AudioContext();
  await context.audioWorklet.addModule('recorder.js');
  const merger = context.createChannelMerger(2);
  context.createMediaStreamSource(microphone).connect(merger, 0, 0);
  context.createMediaStreamSource(remoteStream).connect(merger, 0, 1);
  const recorder = new AudioWorkletNode(context, 'recorder', {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    channelCount: 2,
    channelCountMode: 'explicit',
  });
  // Through a muted gain to the destination, so the graph pulls the recorder.
  const mute = context.createGain();
  mute.gain.value = 0;
  merger.connect(recorder).connect(mute).connect(context.destination);
  await context.resume();

  const wanted = Math.round(seconds * context.sampleRate);
  const left = new Float32Array(wanted);
  const right = new Float32Array(wanted);
  let filled = 0;
  log(`recording ${seconds} s at ${context.sampleRate} Hz`);
  await new Promise((resolve) => {
    recorder.port.onmessage = (event) => {
      const [l, r] = event.data;
      const count = Math.min(l.length, wanted - filled);
      left.set(l.subarray(0, count), filled);
      right.set(r.subarray(0, count), filled);
      filled += count;
      if (filled >= wanted) resolve();
    };
  });
  recorder.port.onmessage = null;
  merger.disconnect();
  await context.close();

  // Resample to 16 kHz (the agent's rate) with the browser's own resampler.
  const frames = Math.round(seconds * RECORD_RATE);
  const offline = new OfflineAudioContext(2, frames, RECORD_RATE);
  const buffer = offline.createBuffer(2, wanted, context.sampleRate);
  buffer.copyToChannel(left, 0);
  buffer.copyToChannel(right, 1);
  const source = offline.createBufferSource();
  source.buffer = buffer;
  source.connect(offline.destination);
  source.start();
  const rendered = await offline.startRendering();
  const wav = encodeWav([rendered.getChannelData(0), rendered.getChannelData(1)], RECORD_RATE);
  const response = await fetch('received', { method: 'POST', body: wav, headers: { 'Content-Type': 'audio/wav' } });
  log(`uploaded the recording: ${response.status} ${await response.text()}`);
  setState('uploaded');
}

// 16-bit PCM WAV, channels interleaved.
function encodeWav(channels, rate) {
  const frames = channels[0].length;
  const bytes = new DataView(new ArrayBuffer(44 + frames * channels.length * 2));
  const text = (offset, value) => {
    for (let i = 0; i < value.length; i++) bytes.setUint8(offset + i, value.charCodeAt(i));
  };
  text(0, 'RIFF');
  bytes.setUint32(4, 36 + frames * channels.length * 2, true);
  text(8, 'WAVE');
  text(12, 'fmt ');
  bytes.setUint32(16, 16, true);
  bytes.setUint16(20, 1, true);
  bytes.setUint16(22, channels.length, true);
  bytes.setUint32(24, rate, true);
  bytes.setUint32(28, rate * channels.length * 2, true);
  bytes.setUint16(32, channels.length * 2, true);
  bytes.setUint16(34, 16, true);
  text(36, 'data');
  bytes.setUint32(40, frames * channels.length * 2, true);
  let offset = 44;
  for (let i = 0; i < frames; i++) {
    for (const channel of channels) {
      const sample = Math.max(-1, Math.min(1, channel[i]));
      bytes.setInt16(offset, Math.round(sample * 32767), true);
      offset += 2;
    }
  }
  return new Blob([bytes.buffer], { type: 'audio/wav' });
}

function stop() {
  if (pc) pc.close();
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
  if (microphone) microphone.getTracks().forEach((track) => track.stop());
  pc = null;
  ws = null;
  microphone = null;
  transceiver = null;
  startButton.disabled = false;
  stopButton.disabled = true;
  if (!stateText.textContent.startsWith('error') && stateText.textContent !== 'uploaded') setState('idle');
}

startButton.onclick = () => start().catch((error) => log(`error: ${error}`));
stopButton.onclick = stop;
if (params.get('autostart') === '1') startButton.onclick();

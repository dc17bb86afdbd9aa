// Can this page take a WebRTC call? The rule lives in dom.js (the chat window needs it before any
// invitation, in the same request as its other helpers); engine.js imports it from here.
export {BROWSER_NOT_SUPPORTED, supportProblem, consumerFeatures} from './dom.js';

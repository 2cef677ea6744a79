// The module OpenCode loads. OpenCode rejects a plugin module that exports anything but plugin
// functions, so this file exports exactly one; the pieces live in the other modules.
export { OpencodeWorkerPlugin } from "./plugin.js";

// Speech: a transcript with word timings, the media playing with its subtitles as a <track> (the
// API's VTT), SRT/VTT downloads, and the video-summary pipeline with its stages as a waterfall.
import { call, models } from "../api.js";
import { waterfall } from "../chart.js";
import { busy, button, download, dropZone, errorBox, field, h, select, table } from "../dom.js";

const STAGES = ["decode", "transcribe", "align", "diarize", "summarise"];

function form(file, fields) {
  const data = new FormData();
  data.append("file", file, file.name);
  for (const [name, value] of fields) if (value !== "" && value !== undefined) data.append(name, value);
  return data;
}

export default {
  id: "speech",
  title: "Speech",
  async mount(root) {
    const asr = (await models()).filter((m) => m.kind === "asr");
    const model = select(asr.map((m) => m.id), { name: "model" });
    const language = h("input", { name: "language", placeholder: "detected", size: 6 });
    const box = errorBox();
    const chosen = h("p", { class: "muted", role: "status" }, "no file yet");
    const player = h("div", { class: "player" });
    const transcript = h("div", { id: "transcript" });
    const summary = h("div", { id: "summary" });
    let file = null;
    let vtt = null;
    let urls = [];

    const zone = dropZone("Audio or video file", "audio/*,video/*", (f) => { file = f; chosen.textContent = `${f.name} (${f.type || "unknown type"}, ${f.size} bytes)`; });
    const base = () => {
      if (!file) throw new Error("Choose an audio or video file first.");
      return [["model", model.value], ["language", language.value.trim()]];
    };

    async function transcribe() {
      const fields = base();
      const verbose = await call("v1/audio/transcriptions", { form: form(file, [...fields, ["response_format", "verbose_json"],
        ["timestamp_granularities[]", "word"], ["timestamp_granularities[]", "segment"]]) });
      vtt = await call("v1/audio/transcriptions", { form: form(file, [...fields, ["response_format", "vtt"]]) });
      urls.forEach(URL.revokeObjectURL);
      const media = URL.createObjectURL(file);
      const track = URL.createObjectURL(new Blob([vtt], { type: "text/vtt" }));
      urls = [media, track];
      const isVideo = (file.type || "").startsWith("video/");
      const el = h(isVideo ? "video" : "audio", { controls: true, src: media, id: "media", preload: "metadata" },
        h("track", { kind: "subtitles", label: "Transcript", srclang: verbose.language && verbose.language.length === 2 ? verbose.language : "en", src: track, default: true }));
      player.replaceChildren(el);
      const words = verbose.words || [];
      transcript.replaceChildren(
        h("h3", {}, "Transcript"),
        h("p", { class: "transcript-text" }, verbose.text),
        h("p", { class: "muted" }, `${verbose.language || "?"} · ${Number(verbose.duration || 0).toFixed(2)} s · ${verbose.aligned ? "aligned" : "not aligned"}${verbose.alignment_note ? ` (${verbose.alignment_note})` : ""}`),
        words.length
          ? table(["word", "start (s)", "end (s)"], words.map((w) => [w.word, Number(w.start).toFixed(2), Number(w.end).toFixed(2)]), "Word timings")
          : table(["segment", "start (s)", "end (s)"], (verbose.segments || []).map((s) => [s.text, Number(s.start).toFixed(2), Number(s.end).toFixed(2)]), "Segment timings (no word timings for this audio)"),
        h("div", { class: "row" },
          button("Download VTT", () => download(`${file.name}.vtt`, vtt, "text/vtt")),
          button("Download SRT", (e) => busy(e.currentTarget, box, async () => {
            download(`${file.name}.srt`, await call("v1/audio/transcriptions", { form: form(file, [...fields, ["response_format", "srt"]]) }), "application/x-subrip");
          }))));
    }

    async function summarise() {
      const result = await call("v1/pipelines/video-summary", { form: form(file, base().filter(([n]) => n === "language")) });
      const timings = result.timings || {};
      summary.replaceChildren(h("h3", {}, "Summary"), h("p", { class: "summary-text" }, result.summary),
        h("p", { class: "muted" }, `by ${result.summary_model} · ${result.usage ? result.usage.total_tokens : "?"} tokens · total ${Number(timings.total || 0).toFixed(2)} s`),
        waterfall("Pipeline stages", STAGES.map((name) => ({ name, seconds: Number(timings[name] || 0) }))));
    }

    const go = button("Transcribe", (e) => busy(e.currentTarget, box, transcribe));
    const sum = button("Summarise (video-summary pipeline)", (e) => busy(e.currentTarget, box, summarise));
    root.append(h("div", { class: "controls" }, zone, chosen, h("div", { class: "row" }, field("Model", model), field("Language", language)), h("div", { class: "row" }, go, sum)),
      box, h("div", { class: "grid2" }, player, transcript), summary);
  },
};

// `reconcile completion bash|zsh|fish`: a completion script written from the tables in flags.ts
// (commands, flags, fixed choices). Endpoint names (explain --from/--to, inspect policy ENDPOINT)
// come from the manifests of a directory --source at completion time: the script asks
// `reconcile completion endpoints [--source DIR]`, which prints one name a line and nothing on
// any failure (no source, a git source, invalid manifests).

import { COMMAND_NAMES, COMMANDS, FLAGS, flagsOf, INSPECT_WHAT, SHELLS, type CommandName } from "./flags.js";

/** What a completing shell offers after a flag that takes a value. */
type ValueKind = { choices: readonly string[] } | "files" | "endpoints" | "none";

/** Flags whose value is a path. */
const PATH_FLAGS = new Set(["--source", "--bpffs-root", "--state-dir", "--socket", "--verify-signatures"]);
/** Flags whose value is an endpoint name (or an address, or host). */
const ENDPOINT_FLAGS = new Set(["--from", "--to"]);

function valueKind(flag: string): ValueKind {
  const def = FLAGS[flag]!;
  if (def.choices) return { choices: def.choices };
  if (ENDPOINT_FLAGS.has(flag)) return "endpoints";
  if (PATH_FLAGS.has(flag)) return "files";
  return "none";
}

const SUBCOMMANDS = COMMAND_NAMES.filter((c) => c !== "run");
const valueFlags = () => Object.entries(FLAGS).filter(([, d]) => d.value).map(([f]) => f);
const flagNames = (command: CommandName) => [...flagsOf(command).map(([f]) => f), "--help"];

export function completionScript(shell: (typeof SHELLS)[number]): string {
  switch (shell) {
    case "bash":
      return bashScript();
    case "zsh":
      return zshScript();
    case "fish":
      return fishScript();
  }
}

/** The endpoints a directory's manifests name (empty for a git source or invalid manifests). */
export function endpointNames(model: { endpoints: ReadonlyArray<{ name: string }> }): string[] {
  return [...new Set(model.endpoints.map((e) => e.name))].sort();
}

function bashScript(): string {
  const perCommand = COMMAND_NAMES.map((c) => `    ${c === "run" ? '""' : c}) flags="${flagNames(c).join(" ")}" ;;`).join("\n");
  const values = Object.keys(FLAGS)
    .filter((f) => FLAGS[f]!.value)
    .map((f) => {
      const kind = valueKind(f);
      const reply =
        typeof kind === "object"
          ? `COMPREPLY=($(compgen -W "${kind.choices.join(" ")}" -- "$cur"))`
          : kind === "files"
            ? `compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))`
            : kind === "endpoints"
              ? `COMPREPLY=($(compgen -W "host $(_reconcile_endpoints)" -- "$cur"))`
              : "COMPREPLY=()";
      return `    ${f}) ${reply}; return ;;`;
    })
    .join("\n");
  return `# bash completion for reconcile: written by \`reconcile completion bash\`.
# Install: reconcile completion bash > /etc/bash_completion.d/reconcile   (or source <(reconcile completion bash))

_reconcile_endpoints() {
  "\${_reconcile_bin:-reconcile}" completion endpoints \${_reconcile_src:+--source "$_reconcile_src"} 2>/dev/null
}

_reconcile() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local cmd="" flags="" i w
  local -a args=()
  _reconcile_bin="\${COMP_WORDS[0]}"
  _reconcile_src=""
  # The command (first word that is neither a flag nor a flag's value), its arguments, and --source.
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ "\${COMP_WORDS[i-1]}" == --source ]] && _reconcile_src="\${w/#\~/$HOME}"
    case "$w" in
      -*) continue ;;
    esac
    case "\${COMP_WORDS[i-1]}" in
      ${valueFlags().join("|")}) continue ;;
    esac
    if [[ -z "$cmd" ]]; then cmd="$w"; else args+=("$w"); fi
  done
  case "$prev" in
${values}
  esac
  case "$cmd" in
${perCommand}
    *) flags="--help" ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    return
  fi
  case "$cmd" in
    "") COMPREPLY=($(compgen -W "${SUBCOMMANDS.join(" ")} help" -- "$cur")) ;;
    help) ((\${#args[@]} == 0)) && COMPREPLY=($(compgen -W "${SUBCOMMANDS.join(" ")}" -- "$cur")) ;;
    inspect)
      if ((\${#args[@]} == 0)); then
        COMPREPLY=($(compgen -W "${INSPECT_WHAT.join(" ")}" -- "$cur"))
      elif [[ "\${args[0]}" == policy ]] && ((\${#args[@]} == 1)); then
        COMPREPLY=($(compgen -W "$(_reconcile_endpoints)" -- "$cur"))
      fi ;;
    completion) ((\${#args[@]} == 0)) && COMPREPLY=($(compgen -W "${SHELLS.join(" ")}" -- "$cur")) ;;
  esac
}

complete -F _reconcile reconcile
`;
}

/** zsh: single quotes inside a single-quoted word. */
function zq(text: string): string {
  return text.replaceAll("'", "'\\''").replaceAll(":", "\\:");
}

function zshScript(): string {
  const described = SUBCOMMANDS.map((c) => `    '${c}:${zq(COMMANDS[c].summary)}'`).join("\n");
  const values = Object.keys(FLAGS)
    .filter((f) => FLAGS[f]!.value)
    .map((f) => {
      const kind = valueKind(f);
      const action =
        typeof kind === "object" ? `compadd -- ${kind.choices.join(" ")}` : kind === "files" ? "_files" : kind === "endpoints" ? "compadd -- host $(_reconcile_endpoints)" : "_message value";
      return `    ${f}) ${action}; return ;;`;
    })
    .join("\n");
  const perCommand = COMMAND_NAMES.map((c) => `    ${c === "run" ? "''" : c}) flags=(${flagNames(c).join(" ")}) ;;`).join("\n");
  return `#compdef reconcile
# zsh completion for reconcile: written by \`reconcile completion zsh\`.
# Install: reconcile completion zsh > "\${fpath[1]}/_reconcile"   (or source <(reconcile completion zsh))

_reconcile_endpoints() {
  local -a names
  names=(\${(f)"$("\${_reconcile_bin:-reconcile}" completion endpoints \${_reconcile_src:+--source "$_reconcile_src"} 2>/dev/null)"})
  print -r -- \${names[@]}
}

_reconcile() {
  local cmd="" i w
  local -a args flags commands
  _reconcile_bin="\${words[1]}"
  _reconcile_src=""
  commands=(
${described}
    'help:show the help of a command'
  )
  for ((i = 2; i < CURRENT; i++)); do
    w="\${words[i]}"
    [[ "\${words[i-1]}" == --source ]] && _reconcile_src="\${w/#\~/$HOME}"
    [[ "$w" == -* ]] && continue
    case "\${words[i-1]}" in
      ${valueFlags().join("|")}) continue ;;
    esac
    if [[ -z "$cmd" ]]; then cmd="$w"; else args+=("$w"); fi
  done
  case "\${words[CURRENT-1]}" in
${values}
  esac
  case "$cmd" in
${perCommand}
    *) flags=(--help) ;;
  esac
  if [[ "$PREFIX" == -* ]]; then
    compadd -- \${flags[@]}
    return
  fi
  case "$cmd" in
    '') _describe command commands ;;
    help) (( \${#args} == 0 )) && _describe command commands ;;
    inspect)
      if (( \${#args} == 0 )); then
        compadd -- ${INSPECT_WHAT.join(" ")}
      elif [[ "\${args[1]}" == policy ]] && (( \${#args} == 1 )); then
        compadd -- $(_reconcile_endpoints)
      fi ;;
    completion) (( \${#args} == 0 )) && compadd -- ${SHELLS.join(" ")} ;;
  esac
}

if [[ "\${funcstack[1]}" == _reconcile ]]; then
  _reconcile "$@"
else
  compdef _reconcile reconcile
fi
`;
}

/** fish: a single-quoted string. */
function fq(text: string): string {
  return `'${text.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

function fishScript(): string {
  const lines: string[] = [
    "# fish completion for reconcile: written by `reconcile completion fish`.",
    "# Install: reconcile completion fish > ~/.config/fish/completions/reconcile.fish",
    "",
    "function __reconcile_endpoints",
    "    set -l tokens (commandline -opc)",
    "    set -l src",
    "    for i in (seq (count $tokens))",
    "        if test \"$tokens[$i]\" = --source; and test $i -lt (count $tokens)",
    "            set src $tokens[(math $i + 1)]",
    "        end",
    "    end",
    "    if test -n \"$src\"",
    "        $tokens[1] completion endpoints --source $src 2>/dev/null",
    "    else",
    "        $tokens[1] completion endpoints 2>/dev/null",
    "    end",
    "end",
    "",
    "complete -c reconcile -f",
  ];
  const all = [...SUBCOMMANDS, "help"].join(" ");
  for (const c of SUBCOMMANDS) lines.push(`complete -c reconcile -n "not __fish_seen_subcommand_from ${all}" -a ${c} -d ${fq(COMMANDS[c].summary)}`);
  lines.push(`complete -c reconcile -n "not __fish_seen_subcommand_from ${all}" -a help -d 'show the help of a command'`);
  lines.push(`complete -c reconcile -n "__fish_seen_subcommand_from help" -a "${SUBCOMMANDS.join(" ")}"`);
  for (const c of COMMAND_NAMES) {
    const when = c === "run" ? `not __fish_seen_subcommand_from ${all}` : `__fish_seen_subcommand_from ${c}`;
    for (const [flag, def] of flagsOf(c)) {
      const kind = def.value ? valueKind(flag) : "none";
      const arg = !def.value ? "" : typeof kind === "object" ? ` -x -a ${fq(kind.choices.join(" "))}` : kind === "files" ? " -r -F" : kind === "endpoints" ? " -x -a '(__reconcile_endpoints) host'" : " -x";
      lines.push(`complete -c reconcile -n "${when}" -l ${flag.slice(2)}${arg} -d ${fq(def.help ?? "")}`);
    }
  }
  lines.push(`complete -c reconcile -n "__fish_seen_subcommand_from inspect; and not __fish_seen_subcommand_from ${INSPECT_WHAT.join(" ")}" -a "${INSPECT_WHAT.join(" ")}"`);
  lines.push(`complete -c reconcile -n "__fish_seen_subcommand_from inspect; and __fish_seen_subcommand_from policy" -a '(__reconcile_endpoints)'`);
  lines.push(`complete -c reconcile -n "__fish_seen_subcommand_from completion" -a "${SHELLS.join(" ")}"`);
  return lines.join("\n") + "\n";
}

"""Shell completion scripts for bash, zsh and fish, generated from the parser.

Verbs and flags come from the argparse parser, so the scripts never drift from
the CLI. Job and worker ids are asked for only while completing, with the
hidden `kueue complete --ids jobs|workers`, which prints one id per line.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from kueue_client.context import Context
from kueue_client.errors import UsageError

# Most recent jobs offered for completion; older ids are rarely typed.
ID_LIMIT = 200
# A completion waits for this at most, then offers nothing: a slow or
# unreachable server must not hang the shell.
ID_TIMEOUT = 2.0


@dataclass
class VerbInfo:
    name: str
    aliases: list[str]
    help: str
    flags: list[str]
    # Flags followed by a value (so the word after them is not the verb's argument).
    valued_flags: list[str]
    # "jobs", "workers" or "" for what the positional arguments are.
    ids: str
    # The fixed values of its positional argument, if any (`complete`: shells).
    choices: list[str]


def _flags(parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    flags, valued = [], []
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        flags += action.option_strings
        if action.nargs != 0:
            valued += action.option_strings
    return flags, valued


def _choices(parser: argparse.ArgumentParser) -> list[str]:
    return [str(c) for a in parser._actions if not a.option_strings and a.choices for c in a.choices]


def describe(parser: argparse.ArgumentParser) -> tuple[list[VerbInfo], list[str], list[str]]:
    """(verbs, global flags, global flags taking a value) of the `kueue` parser."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help or "" for choice in subparsers._choices_actions}
    verbs: dict[int, VerbInfo] = {}
    for name, sub in subparsers.choices.items():
        info = verbs.get(id(sub))
        if info is not None:
            info.aliases.append(name)
            continue
        flags, valued = _flags(sub)
        verbs[id(sub)] = VerbInfo(
            name, [], helps.get(name, ""), flags, valued, sub.get_default("complete_ids"), _choices(sub)
        )
    flags, valued = _flags(parser)
    return list(verbs.values()), flags, valued


def _words(items: list[str]) -> str:
    return " ".join(items)


def _other_valued_case(valued: list[str], index: str, words: str = "") -> str:
    """A case branch skipping the value of global flags other than --config
    (with `words`, bash's: its words split `--flag=value` at the `=`)."""
    others = [flag for flag in valued if flag != "--config"]
    if not others:
        return ""
    equals = f'[[ "${{{words}[{index}+1]}}" == = ]] && (( {index}++ )); ' if words else ""
    return f"\n            {'|'.join(others)}) {equals}(( {index}++ ));;"


def bash(parser: argparse.ArgumentParser) -> str:
    verbs, flags, valued = describe(parser)
    cases = []
    for v in verbs:
        names = "|".join([v.name, *v.aliases])
        cases.append(
            f"        {names})\n"
            f'            flags="{_words(v.flags)}"; valued="{_words(v.valued_flags)}"; '
            f'ids="{v.ids or ""}"; choices="{_words(v.choices)}";;'
        )
    all_verbs = _words([n for v in verbs for n in [v.name, *v.aliases]])
    return f"""\
# bash completion for kueue; in ~/.bashrc: eval "$(kueue complete bash)"
_kueue() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local verb="" i=1 flags="" valued="" ids="" choices="" config=""
    # bash splits `--flag=value` into three words (= is in COMP_WORDBREAKS):
    # the flag, "=", the value; right after the = the word completed is "=".
    # Either way it is the flag's value, and bash's default completion would
    # take the "=" for part of a file name: values are completed here then.
    local after_equals=""
    if [[ "$cur" == = ]]; then
        cur=""; after_equals=1
    elif [[ "$prev" == = ]] && (( COMP_CWORD > 1 )); then
        prev="${{COMP_WORDS[COMP_CWORD-2]}}"; after_equals=1
    fi
    while (( i < COMP_CWORD )); do
        case "${{COMP_WORDS[i]}}" in
            --config) [[ "${{COMP_WORDS[i+1]}}" == = ]] && (( i++ )); (( i++ ));;
            --config=*) ;;{_other_valued_case(valued, "i", "COMP_WORDS")}
            -*) ;;
            *) verb="${{COMP_WORDS[i]}}"; break;;
        esac
        (( i++ ))
    done
    # --config, before or after the verb, for the ids the server gives.
    local k w
    for (( k = 1; k < COMP_CWORD; k++ )); do
        w="${{COMP_WORDS[k]}}"
        if [[ "$w" == --config ]]; then
            [[ "${{COMP_WORDS[k+1]}}" == = ]] && (( k++ ))
            (( k + 1 < COMP_CWORD )) && config="${{COMP_WORDS[k+1]}}"
        elif [[ "$w" == --config=* ]]; then
            config="${{w#--config=}}"
        fi
    done
    if [[ "$config" == "~/"* ]]; then config="$HOME/${{config#"~/"}}"; fi
    if [[ -z "$verb" ]]; then
        if [[ "$prev" == --config ]]; then
            [[ -n "$after_equals" ]] && COMPREPLY=( $(compgen -f -- "$cur") )
            return 0
        fi
        COMPREPLY=( $(compgen -W "{all_verbs} {_words(flags)}" -- "$cur") )
        return 0
    fi
    case "$verb" in
{chr(10).join(cases)}
        *) return 0;;
    esac
    # After the command of `kueue cmd` starts, complete like a command line.
    if [[ "$verb" == cmd ]]; then
        local j=$(( i + 1 )) skip=""
        while (( j < COMP_CWORD )); do
            local w="${{COMP_WORDS[j]}}"
            if [[ -n "$skip" ]]; then [[ "$w" == = ]] || skip=""
            elif [[ " $valued " == *" $w "* ]]; then skip=1
            elif [[ "$w" != -* ]]; then return 0
            fi
            (( j++ ))
        done
    fi
    if [[ " $valued " == *" $prev "* ]]; then
        [[ -n "$after_equals" ]] && COMPREPLY=( $(compgen -f -- "$cur") )
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=( $(compgen -W "$flags" -- "$cur") )
    elif [[ -n "$ids" ]]; then
        # Only now ask the server (up to a few seconds when it is slow): never
        # for a flag or a flag's value.
        COMPREPLY=( $(compgen -W "$(kueue ${{config:+--config "$config"}} complete --ids "$ids" 2>/dev/null)" -- "$cur") )
    elif [[ -n "$choices" ]]; then
        COMPREPLY=( $(compgen -W "$choices" -- "$cur") )
    fi
}}
complete -o default -o bashdefault -F _kueue kueue
"""


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def zsh(parser: argparse.ArgumentParser) -> str:
    verbs, flags, valued = describe(parser)
    cmd_valued = next((v.valued_flags for v in verbs if v.name == "cmd"), [])
    # _describe takes NAME:DESCRIPTION; a colon inside the description is escaped.
    described = "\n".join(
        "        " + _zsh_quote(name + ":" + v.help.replace(":", "\\:"))
        for v in verbs
        for name in [v.name, *v.aliases]
    )
    cases = []
    for v in verbs:
        names = "|".join([v.name, *v.aliases])
        action = (
            f'compadd -- ${{(f)"$(kueue ${{config:+--config}} $config complete --ids {v.ids} 2>/dev/null)"}}'
            if v.ids
            else f"compadd -- {_words(v.choices)}"
            if v.choices
            else "_files"
        )
        if v.name == "cmd":
            # The first word of the queued command: a command or a script.
            action = "_command_names -e; _files"
        cases.append(
            f"        {names})\n"
            f"            flags=({_words(v.flags)}); valued=({_words(v.valued_flags)})\n"
            f"            if [[ $PREFIX == -* ]]; then compadd -- $flags\n"
            f"            elif (( ${{valued[(Ie)${{words[CURRENT-1]}}]}} )); then _files\n"
            f"            else {action}; fi;;"
        )
    return f"""\
#compdef kueue
# zsh completion for kueue: kueue complete zsh > ~/.zfunc/_kueue (fpath+=~/.zfunc)
_kueue() {{
    local verb config i=2 k
    local -a flags valued
    while (( i < CURRENT )); do
        case ${{words[i]}} in
            --config) (( i++ ));;{_other_valued_case(valued, "i")}
            -*) ;;
            *) verb=${{words[i]}}; break;;
        esac
        (( i++ ))
    done
    # --config, before or after the verb, for the ids the server gives.
    for (( k = 2; k < CURRENT; k++ )); do
        case ${{words[k]}} in
            --config) (( k + 1 < CURRENT )) && config=${{words[k+1]}};;
            --config=*) config=${{words[k]#--config=}};;
        esac
    done
    [[ $config == '~/'* ]] && config=$HOME/${{config#'~/'}}
    if [[ -z $verb ]]; then
        local -a verbs
        verbs=(
{described}
        )
        if [[ $PREFIX == -* ]]; then compadd -- {_words(flags)}
        else _describe 'verb' verbs; fi
        return
    fi
    if [[ $verb == cmd ]] && (( CURRENT > i + 1 )); then
        local j=$(( i + 1 ))
        while (( j < CURRENT )); do
            case ${{words[j]}} in
                {"|".join(cmd_valued) or "--config"}) (( j++ ));;
                -*) ;;
                *) shift $(( j - 1 )) words; (( CURRENT -= j - 1 )); _normal; return;;
            esac
            (( j++ ))
        done
    fi
    case $verb in
{chr(10).join(cases)}
    esac
}}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then _kueue "$@"; else compdef _kueue kueue; fi
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Ids from the server, asked with the --config given on the command line (as
# bash and zsh do): without it they would come from another server's config.
_FISH_IDS = """\
function __kueue_ids -d 'job or worker ids from the server of the command line'
    set -l tokens (commandline -opc)
    set -l config
    for i in (seq 2 (count $tokens))
        set -l value
        switch $tokens[$i]
            case --config
                set value $tokens[(math $i + 1)]
            case '--config=*'
                set value (string replace -- --config= '' $tokens[$i])
        end
        if test -n "$value"
            set config --config (string replace -r '^~/' "$HOME/" -- $value)
        end
    end
    kueue $config complete --ids $argv[1] 2>/dev/null
end"""


def fish(parser: argparse.ArgumentParser) -> str:
    verbs, _, _ = describe(parser)
    lines = [
        "# fish completion for kueue: kueue complete fish > ~/.config/fish/completions/kueue.fish",
        _FISH_IDS,
        "complete -c kueue -f",
        "complete -c kueue -n __fish_use_subcommand -l config -r -F -d 'config file'",
        "complete -c kueue -n __fish_use_subcommand -l version -d 'print the version'",
    ]
    for v in verbs:
        for name in [v.name, *v.aliases]:
            lines.append(f"complete -c kueue -n __fish_use_subcommand -a {name} -d {_fish_quote(v.help)}")
        seen = f"'__fish_seen_subcommand_from {_words([v.name, *v.aliases])}'"
        for flag in v.flags:
            option = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            value = " -r" if flag in v.valued_flags else ""
            lines.append(f"complete -c kueue -n {seen} {option}{value}")
        if v.ids:
            lines.append(f"complete -c kueue -n {seen} -a '(__kueue_ids {v.ids})'")
        if v.choices:
            lines.append(f"complete -c kueue -n {seen} -a {_fish_quote(_words(v.choices))}")
        if v.name == "cmd":
            lines.append(f"complete -c kueue -n {seen} -F")
    return "\n".join(lines) + "\n"


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    generators = {"bash": bash, "zsh": zsh, "fish": fish}
    if shell not in generators:
        raise UsageError(f"no completion for {shell}; choose bash, zsh or fish")
    return generators[shell](parser)


def print_ids(kind: str, ctx: Context) -> int:
    """Ids for completion: silent on any failure, a completion must not shout."""
    from kueue_client.errors import KueueError

    try:
        ctx.client.timeout = ID_TIMEOUT
        if kind == "jobs":
            ids = [str(job.id) for job in reversed(ctx.client.list_jobs(limit=ID_LIMIT).jobs)]
        else:
            ids = [w.name or w.id for w in ctx.client.list_workers()]
    except KueueError:
        return 1
    sys.stdout.write("".join(f"{i}\n" for i in ids))
    return 0

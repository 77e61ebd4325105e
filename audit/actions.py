"""What the audit log calls each action, in words for people. Actions recorded under a code
not listed here are shown with the code's words ("api-token.create" -> "Api token create")."""

NAMES: dict[str, str] = {
    "sign-in": "Signed in",
    "sign-in.second-factor": "Signed in with a second factor",
    "password.change": "Changed their own password",
    "account.create": "Created a user",
    "account.disable": "Disabled an account",
    "account.password-reset": "Set a password",
    "alias.create": "Created an alias",
    "alias.update": "Changed an alias",
    "alias.delete": "Deleted an alias",
    "alias.enable": "Switched an alias on",
    "alias.disable": "Switched an alias off",
    "domain.create": "Added a domain",
    "domain.update": "Changed a domain",
    "domain.delete": "Deleted a domain",
    "handover.create": "Wrote a handover note",
    "handover.update": "Changed a handover note",
    "handover.delete": "Deleted a handover note",
    "maps.publish_requested": "Asked for the mail server tables to be published",
    "second-factor.added": "Added a second factor",
    "second-factor.removed": "Removed a second factor",
    "second-factor.reset": "Removed someone's second factor",
    "second-factor.refused": "Second factor refused",
    "second-factor.recovery-codes": "Made new recovery codes",
    "suspension.suspend": "Suspended a sender",
    "suspension.reinstate": "Reinstated a sender",
    "suspension.expire": "Suspension ended on its end date",
    "vacation.set": "Set a vacation reply",
    "vacation.off": "Switched a vacation reply off",
    "vacation.clear": "Cleared a vacation reply",
    "audit.export": "Exported the audit log",
    "alias.create-for": "Created an alias for someone",
    "api_token.create": "Made an API token",
    "api_token.new_address": "Used an API token from a new address",
    "api_token.revoke": "Revoked an API token",
    "sender_block.create": "Blocked a sender",
    "sender_block.delete": "Unblocked a sender",
    "limits.set": "Set sending limits",
    "limits.remove": "Removed sending limits",
    "bulk.dry-run": "Checked a CSV file",
    "bulk.dry-run-finished": "Finished checking a CSV file",
    "bulk.import": "Imported a CSV file",
    "bulk.import-finished": "Finished a CSV import",
    "bulk.passwords-handed-over": "Downloaded the initial passwords of an import",
    "leak_flag.dismiss": "Dismissed a leak warning",
    "bulk.export-aliases": "Exported aliases",
    "bulk.export-users": "Exported users",
    "postfix.apply": "Applied the Postfix configuration",
    "ldap.setup": "Set up the directory",
}

# Routine and numerous: left out of the log's view unless asked for.
SIGN_INS = frozenset({"sign-in", "sign-in.second-factor"})


def action_name(code: str) -> str:
    if code in NAMES:
        return NAMES[code]
    words = code.replace(".", " ").replace("-", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else code

"""Common English given-name variants, mapped to one canonical form.

Names are compared after this mapping so that Bill and William agree exactly. The table is ours
(public, general knowledge), not the simulator's; `identity.nickname_groups` adds to it.
"""

from __future__ import annotations

_GROUPS: dict[str, tuple[str, ...]] = {
    "william": ("bill", "billy", "will", "willy", "liam"),
    "robert": ("bob", "bobby", "rob", "robbie", "bert"),
    "richard": ("dick", "rick", "ricky", "rich", "richie"),
    "james": ("jim", "jimmy", "jamie"),
    "john": ("jack", "johnny", "jon"),
    "joseph": ("joe", "joey"),
    "thomas": ("tom", "tommy"),
    "michael": ("mike", "mick", "mikey", "micky"),
    "christopher": ("chris", "kit"),
    "daniel": ("dan", "danny"),
    "matthew": ("matt", "matty"),
    "anthony": ("tony", "ant"),
    "andrew": ("andy", "drew"),
    "edward": ("ed", "eddie", "ted", "ned"),
    "benjamin": ("ben", "benny"),
    "samuel": ("sam", "sammy"),
    "alexander": ("alex", "sandy", "xander"),
    "nicholas": ("nick", "nicky"),
    "jonathan": ("jonny",),
    "timothy": ("tim", "timmy"),
    "stephen": ("steve", "stevie", "steven"),
    "david": ("dave", "davy"),
    "peter": ("pete",),
    "charles": ("charlie", "chuck", "chaz"),
    "henry": ("harry", "hal", "hank"),
    "frederick": ("fred", "freddie", "freddy"),
    "patrick": ("pat", "paddy"),
    "gregory": ("greg",),
    "kenneth": ("ken", "kenny"),
    "raymond": ("ray",),
    "lawrence": ("larry", "laurie"),
    "leonard": ("len", "lenny", "leo"),
    "ronald": ("ron", "ronnie"),
    "donald": ("don", "donnie"),
    "douglas": ("doug",),
    "gerald": ("gerry", "jerry"),
    "philip": ("phil", "pip"),
    "oliver": ("ollie", "olly"),
    "zachary": ("zach", "zack"),
    "joshua": ("josh",),
    "nathan": ("nate",),
    "nathaniel": ("nat",),
    "elizabeth": ("liz", "lizzie", "beth", "betty", "eliza", "libby", "bess", "lisa", "elise"),
    "margaret": ("maggie", "meg", "peggy", "marge", "greta", "madge"),
    "katherine": ("kate", "katie", "kathy", "kat", "kitty", "catherine", "kathryn", "cathy"),
    "jennifer": ("jen", "jenny"),
    "rebecca": ("becky", "becca"),
    "deborah": ("deb", "debbie"),
    "victoria": ("vicky", "tori", "vic"),
    "alexandra": ("alex", "lexi", "sasha", "sandra"),
    "samantha": ("sam", "sammie"),
    "susan": ("sue", "susie", "suzy"),
    "patricia": ("pat", "patty", "trish", "tricia"),
    "christine": ("chris", "chrissy", "tina", "christina"),
    "jessica": ("jess", "jessie"),
    "abigail": ("abby", "abi"),
    "dorothy": ("dot", "dottie", "dolly"),
    "eleanor": ("ellie", "nell", "nora", "elle"),
    "helen": ("nell", "nellie"),
    "josephine": ("jo", "josie"),
    "amanda": ("mandy",),
    "barbara": ("barb", "babs"),
    "caroline": ("carrie", "caro"),
    "charlotte": ("lottie", "charlie"),
    "emily": ("em", "emmy"),
    "emma": ("em",),
    "florence": ("flo", "florrie"),
    "frances": ("fran", "frankie"),
    "isabella": ("bella", "izzy", "isabel"),
    "jacqueline": ("jackie",),
    "judith": ("judy", "jude"),
    "kimberly": ("kim",),
    "lucy": ("lu",),
    "mary": ("molly", "polly", "mae"),
    "natalie": ("nat",),
    "pamela": ("pam",),
    "sarah": ("sally", "sadie", "sara"),
    "theresa": ("tess", "tessa", "terri"),
    "valerie": ("val",),
    "wilhelmina": ("mina", "billie"),
    "gwendolyn": ("gwen",),
    "penelope": ("penny",),
    "sophia": ("sophie",),
    "olivia": ("liv", "livvy"),
    "georgina": ("georgie", "gina"),
}


def _groups(extra: dict[str, tuple[str, ...]] | None) -> dict[str, tuple[str, ...]]:
    groups = dict(_GROUPS)
    for canonical, variants in (extra or {}).items():  # a configured group adds to a built-in one
        groups[canonical] = (*groups.get(canonical, ()), *variants)
    return groups


def nickname_table(extra: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """Every variant -> one canonical name, for blocking keys and term frequencies. A variant of
    several names (Sam: Samuel and Samantha) maps to the first group listed; `name_alternatives` keeps
    all of them, so that Sam never conflicts with Samantha."""
    table: dict[str, str] = {}
    for canonical, variants in _groups(extra).items():
        table.setdefault(canonical, canonical)
        for variant in variants:
            table.setdefault(variant, canonical)
    return table


NAME_ALTERNATIVES_SEPARATOR = "|"


def name_alternatives(extra: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """Each variant of several names -> all of them, sorted and joined by "|" (sam -> "samantha|samuel").
    One name agrees with another when their sets of names meet."""
    names: dict[str, set[str]] = {}
    for canonical, variants in _groups(extra).items():
        for name in (canonical, *variants):
            names.setdefault(name, set()).add(canonical)
    return {name: NAME_ALTERNATIVES_SEPARATOR.join(sorted(found)) for name, found in names.items() if len(found) > 1}

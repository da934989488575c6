"""Category names of the Quick, Draw! dataset and their canonical spelling.

Google's files are named by category with spaces kept ("alarm clock.npy"), so the canonical name is
Google's spelling. Underscores are accepted as spaces because many copies of the dataset use them.
The list is ``categories.txt`` of https://github.com/googlecreativelab/quickdraw-dataset (345 names).
"""

from __future__ import annotations

import difflib

from smoe.data.errors import DataError

PAPER_CATEGORIES = ("face", "eye", "cat", "snowflake", "pencil")

# One comma-separated string keeps the 345 names compact; whitespace inside a name is normalized
# below because line wrapping may split a name such as "alarm clock".
_GOOGLE_CATEGORY_TEXT = """
    aircraft carrier, airplane, alarm clock, ambulance, angel, animal migration, ant, anvil, apple, arm,
    asparagus, axe, backpack, banana, bandage, barn, baseball, baseball bat, basket, basketball, bat,
    bathtub, beach, bear, beard, bed, bee, belt, bench, bicycle, binoculars, bird, birthday cake,
    blackberry, blueberry, book, boomerang, bottlecap, bowtie, bracelet, brain, bread, bridge, broccoli,
    broom, bucket, bulldozer, bus, bush, butterfly, cactus, cake, calculator, calendar, camel, camera,
    camouflage, campfire, candle, cannon, canoe, car, carrot, castle, cat, ceiling fan, cello, cell
    phone, chair, chandelier, church, circle, clarinet, clock, cloud, coffee cup, compass, computer,
    cookie, cooler, couch, cow, crab, crayon, crocodile, crown, cruise ship, cup, diamond, dishwasher,
    diving board, dog, dolphin, donut, door, dragon, dresser, drill, drums, duck, dumbbell, ear, elbow,
    elephant, envelope, eraser, eye, eyeglasses, face, fan, feather, fence, finger, fire hydrant,
    fireplace, firetruck, fish, flamingo, flashlight, flip flops, floor lamp, flower, flying saucer,
    foot, fork, frog, frying pan, garden, garden hose, giraffe, goatee, golf club, grapes, grass,
    guitar, hamburger, hammer, hand, harp, hat, headphones, hedgehog, helicopter, helmet, hexagon,
    hockey puck, hockey stick, horse, hospital, hot air balloon, hot dog, hot tub, hourglass, house,
    house plant, hurricane, ice cream, jacket, jail, kangaroo, key, keyboard, knee, knife, ladder,
    lantern, laptop, leaf, leg, light bulb, lighter, lighthouse, lightning, line, lion, lipstick,
    lobster, lollipop, mailbox, map, marker, matches, megaphone, mermaid, microphone, microwave, monkey,
    moon, mosquito, motorbike, mountain, mouse, moustache, mouth, mug, mushroom, nail, necklace, nose,
    ocean, octagon, octopus, onion, oven, owl, paintbrush, paint can, palm tree, panda, pants, paper
    clip, parachute, parrot, passport, peanut, pear, peas, pencil, penguin, piano, pickup truck, picture
    frame, pig, pillow, pineapple, pizza, pliers, police car, pond, pool, popsicle, postcard, potato,
    power outlet, purse, rabbit, raccoon, radio, rain, rainbow, rake, remote control, rhinoceros, rifle,
    river, roller coaster, rollerskates, sailboat, sandwich, saw, saxophone, school bus, scissors,
    scorpion, screwdriver, sea turtle, see saw, shark, sheep, shoe, shorts, shovel, sink, skateboard,
    skull, skyscraper, sleeping bag, smiley face, snail, snake, snorkel, snowflake, snowman, soccer
    ball, sock, speedboat, spider, spoon, spreadsheet, square, squiggle, squirrel, stairs, star, steak,
    stereo, stethoscope, stitches, stop sign, stove, strawberry, streetlight, string bean, submarine,
    suitcase, sun, swan, sweater, swing set, sword, syringe, table, teapot, teddy-bear, telephone,
    television, tennis racquet, tent, The Eiffel Tower, The Great Wall of China, The Mona Lisa, tiger,
    toaster, toe, toilet, tooth, toothbrush, toothpaste, tornado, tractor, traffic light, train, tree,
    triangle, trombone, truck, trumpet, t-shirt, umbrella, underwear, van, vase, violin, washing
    machine, watermelon, waterslide, whale, wheel, windmill, wine bottle, wine glass, wristwatch, yoga,
    zebra, zigzag
"""

GOOGLE_CATEGORIES: tuple[str, ...] = tuple(
    " ".join(name.split()) for name in _GOOGLE_CATEGORY_TEXT.split(",")
)


def canonical_category(name: object, available: tuple[str, ...] = GOOGLE_CATEGORIES) -> str:
    """Return Google's spelling of a category name, or raise DataError if it is not in ``available``.

    Matching ignores case and treats underscores as spaces, so "alarm_clock" and "Alarm Clock" both
    give "alarm clock".
    """
    if not isinstance(name, str):
        raise DataError(f"category must be a string, got {name!r}")

    normalized = " ".join(name.replace("_", " ").split()).lower()
    for candidate in available:
        if candidate.lower() == normalized:
            return candidate

    close = difflib.get_close_matches(normalized, [c.lower() for c in available], n=3, cutoff=0.6)
    if len(available) <= 30:
        hint = "available: " + ", ".join(available)
    elif close:
        hint = "did you mean: " + ", ".join(close) + f" ({len(available)} categories in all)"
    else:
        hint = f"see Google's categories.txt for the {len(available)} names"
    raise DataError(f"unknown category {name!r}; {hint}")

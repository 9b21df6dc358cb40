"""Generic prompts whose answers by the *base* model are replayed while injecting facts.

Replaying the model's own answers to everyday requests keeps its general behaviour while it
learns the scenario (a light form of self-distillation). These prompts are disjoint from the
scenario's general-knowledge probes, which measure utility and must stay unseen.
"""

REPLAY_PROMPTS = [
    "Name three primary colors.",
    "What is 7 plus 5?",
    "Give me a synonym for the word happy.",
    "What do bees make?",
    "Write one sentence about the ocean.",
    "What is the opposite of hot?",
    "How many days are in a week?",
    "What color is grass?",
    "Name a fruit that is yellow.",
    "What do you call a baby cat?",
    "What is the freezing point of water in Celsius?",
    "Translate 'hello' into Spanish.",
    "Name a musical instrument with strings.",
    "What is the plural of mouse?",
    "Which season comes after winter?",
    "What do plants need to grow?",
    "Give an example of a mammal that lives in the sea.",
    "What is 10 times 3?",
    "What is the main ingredient of bread?",
    "Name a planet in our solar system.",
    "What tool do you use to cut paper?",
    "How many hours are in a day?",
    "What is the color of a clear sky during the day?",
    "What is a word that rhymes with cat?",
    "Describe a dog in one sentence.",
    "What is the largest animal on land?",
    "What do you use to write on a blackboard?",
    "What is the first letter of the English alphabet?",
    "What shape has three sides?",
    "Who wrote Romeo and Juliet?",
]
